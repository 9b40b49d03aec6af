//! Peak RSS, the one-line form a child process reports a run in, and the table/CSV the
//! harness prints (medians over runs, with the spread of the ratio).

use crate::scenario::{Outcome, Scenario};
use crate::BenchError;

/// One run of one scenario, without the digests: what a child process reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Which scenario.
    pub scenario: Scenario,
    /// Records processed.
    pub records: u64,
    /// Engine records/s.
    pub engine_rate: f64,
    /// Baseline records/s.
    pub baseline_rate: f64,
    /// Peak RSS after the engine phase, MiB.
    pub peak_rss_mib: f64,
    /// Whether engine and baseline results matched.
    pub results_match: bool,
    /// Free text.
    pub note: String,
    /// Records/s of a second baseline, where the scenario has one (K1: the plain consumer).
    pub second_rate: Option<f64>,
    /// Peak RSS of the baseline's own process, MiB, where it runs in one.
    pub baseline_rss_mib: Option<f64>,
}

impl From<&Outcome> for Summary {
    fn from(o: &Outcome) -> Self {
        Summary {
            scenario: o.scenario,
            records: o.records,
            engine_rate: o.engine_rate(),
            baseline_rate: o.baseline_rate(),
            peak_rss_mib: o.peak_rss_mib,
            results_match: o.results_match(),
            note: o.note.clone(),
            second_rate: o.second_baseline_rate(),
            baseline_rss_mib: o.baseline_peak_rss_mib,
        }
    }
}

const PREFIX: &str = "OUTCOME\t";

impl Summary {
    /// The line a child prints on stdout.
    pub fn to_line(&self) -> String {
        let optional = |x: Option<f64>| x.map_or(String::new(), |x| x.to_string());
        format!(
            "{PREFIX}{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.scenario,
            self.records,
            self.engine_rate,
            self.baseline_rate,
            self.peak_rss_mib,
            self.results_match,
            optional(self.second_rate),
            optional(self.baseline_rss_mib),
            self.note.replace(['\t', '\n'], " ")
        )
    }

    /// Finds and parses the line a child printed.
    pub fn from_output(stdout: &str) -> Result<Summary, BenchError> {
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(PREFIX))
            .ok_or_else(|| BenchError::Harness("the child printed no outcome".into()))?;
        let f: Vec<&str> = line.splitn(9, '\t').collect();
        let bad = || BenchError::Harness(format!("unreadable outcome line `{line}`"));
        if f.len() != 9 {
            return Err(bad());
        }
        let optional = |s: &str| match s {
            "" => Ok(None),
            s => s.parse().map(Some).map_err(|_| bad()),
        };
        Ok(Summary {
            scenario: f[0].parse()?,
            records: f[1].parse().map_err(|_| bad())?,
            engine_rate: f[2].parse().map_err(|_| bad())?,
            baseline_rate: f[3].parse().map_err(|_| bad())?,
            peak_rss_mib: f[4].parse().map_err(|_| bad())?,
            results_match: f[5].parse().map_err(|_| bad())?,
            second_rate: optional(f[6])?,
            baseline_rss_mib: optional(f[7])?,
            note: f[8].to_string(),
        })
    }

    /// Engine rate / baseline rate.
    pub fn ratio(&self) -> f64 {
        self.engine_rate / self.baseline_rate
    }

    /// Engine rate / second baseline's rate, where there is one.
    pub fn second_ratio(&self) -> Option<f64> {
        self.second_rate.map(|r| self.engine_rate / r)
    }
}

/// Output format of the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// An aligned table.
    #[default]
    Table,
    /// Comma-separated values with a header line.
    Csv,
}

impl std::str::FromStr for Format {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, BenchError> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            other => Err(BenchError::Harness(format!(
                "unknown format `{other}` (table or csv)"
            ))),
        }
    }
}

/// One scenario over all its runs: medians, and the spread of the ratio.
#[derive(Debug, Clone)]
pub struct Row {
    /// The runs.
    pub runs: Vec<Summary>,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

impl Row {
    fn med(&self, f: impl Fn(&Summary) -> f64) -> f64 {
        median(self.runs.iter().map(f).collect())
    }

    /// The median of an optional figure over the runs that have it; blank where none has.
    fn med_optional(&self, f: impl Fn(&Summary) -> Option<f64>, digits: usize) -> String {
        let xs: Vec<f64> = self.runs.iter().filter_map(f).collect();
        if xs.is_empty() {
            String::new()
        } else {
            format!("{:.digits$}", median(xs))
        }
    }

    fn cells(&self) -> Vec<String> {
        let first = &self.runs[0];
        let ratios: Vec<f64> = self.runs.iter().map(Summary::ratio).collect();
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        vec![
            first.scenario.to_string(),
            first.records.to_string(),
            format!("{:.0}", self.med(|s| s.engine_rate)),
            format!("{:.0}", self.med(|s| s.baseline_rate)),
            format!("{:.2}", self.med(Summary::ratio)),
            format!("{:.0}", self.med(|s| s.peak_rss_mib)),
            format!("{min:.2}-{max:.2}"),
            self.med_optional(|s| s.baseline_rss_mib, 0),
            self.med_optional(|s| s.second_rate, 0),
            self.med_optional(Summary::second_ratio, 2),
            self.runs.len().to_string(),
            if self.runs.iter().all(|s| s.results_match) {
                "ok".into()
            } else {
                "MISMATCH".into()
            },
            first.note.clone(),
        ]
    }

    /// The rows as a table or CSV, with a header.
    pub fn render(rows: &[Row], format: Format) -> String {
        let header = [
            "scenario",
            "records",
            "engine records/s",
            "baseline records/s",
            "ratio",
            "peak RSS MiB",
            "ratio range",
            "baseline peak RSS MiB",
            "baseline 2 records/s",
            "ratio 2",
            "runs",
            "results",
            "note",
        ];
        let body: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
        match format {
            Format::Csv => {
                let mut out = header.join(",");
                out.push('\n');
                for r in body {
                    let r: Vec<String> = r
                        .into_iter()
                        .map(|c| {
                            if c.contains(',') {
                                format!("\"{}\"", c.replace('"', "\"\""))
                            } else {
                                c
                            }
                        })
                        .collect();
                    out.push_str(&r.join(","));
                    out.push('\n');
                }
                out
            }
            Format::Table => {
                let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
                for r in &body {
                    for (w, c) in widths.iter_mut().zip(r) {
                        *w = (*w).max(c.len());
                    }
                }
                let line = |cells: Vec<String>| {
                    let padded: Vec<String> = cells
                        .iter()
                        .zip(&widths)
                        .enumerate()
                        .map(|(i, (c, w))| {
                            // Text columns left-aligned, figures right-aligned.
                            if i == 0 || i >= 11 {
                                format!("{c:<w$}")
                            } else {
                                format!("{c:>w$}")
                            }
                        })
                        .collect();
                    padded.join("  ").trim_end().to_string()
                };
                let mut out = line(header.iter().map(|s| s.to_string()).collect());
                out.push('\n');
                for r in body {
                    out.push_str(&line(r));
                    out.push('\n');
                }
                out
            }
        }
    }
}
