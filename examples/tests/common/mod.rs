//! Helpers for tests that run the example programs as processes.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running example whose stderr is collected line by line.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) stderr: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Starts `bin` with `args`; stdin is empty.
    pub(crate) fn start(bin: &str, args: &[&str]) -> Running {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        Running { child, stderr }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub(crate) fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no stderr line with `{needle}`; got {:?}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The HTTP address the example printed (`... on http://ADDR`).
    pub(crate) fn http_addr(&self) -> SocketAddr {
        let line = self.wait_for_stderr("on http://", Duration::from_secs(120));
        line.rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Sends a signal.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over HTTP/1.1: (status, body).
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Polls `GET path` until the answer is `want` (status and body), or panics after `timeout`.
pub(crate) fn wait_for_answer(addr: SocketAddr, path: &str, want: (u16, &str), timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = http_get(addr, path);
        if got.0 == want.0 && got.1 == want.1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path}: {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `bin` with `args` and `stdin`, returning (success, stdout, stderr).
pub(crate) fn run(bin: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(data.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Lines of `text`, sorted (for outputs whose line order is free).
pub(crate) fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// A fixed LCG: the same fixtures on every run, without another dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub(crate) fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `lunch-abroad` input files and the lines it must print (sorted).
pub(crate) struct LunchFixture {
    pub(crate) rates: String,
    pub(crate) payments: String,
    pub(crate) expected: Vec<String>,
}

impl LunchFixture {
    /// `n_rates` rates of four currencies and `n_payments` payments in five (one never has a
    /// rate), at random times; the rates file has a malformed line after its
    /// `n_rates / 2 + 1`th, the payments file one at its end.
    pub(crate) fn write(dir: &std::path::Path, n_rates: usize, n_payments: usize) -> Self {
        use std::fmt::Write as _;
        let mut rng = Rng(7);
        let currencies = ["EUR", "USD", "JPY", "CHF", "SEK"];
        let (mut rates, mut payments) = (String::new(), String::new());
        let mut rate_rows = Vec::new();
        for i in 0..n_rates {
            let ts = rng.below(10_000) as i64;
            // SEK never gets a rate.
            let c = currencies[rng.below(4) as usize];
            let rate = format!("{}.{:03}", rng.below(3), rng.below(1000));
            writeln!(rates, "{ts},{c},{rate}").unwrap();
            rate_rows.push((ts, i, c, rate));
            if i == n_rates / 2 {
                rates.push_str("not,a,rate\n");
            }
        }
        let mut expected = Vec::new();
        for i in 0..n_payments {
            let ts = rng.below(10_000) as i64;
            let c = currencies[rng.below(5) as usize];
            let amount = rng.below(100_000) as i64;
            writeln!(payments, "{ts},p{i},{c},{amount}").unwrap();
            // The latest rate strictly before the payment; among equal times, the later line.
            let rate = rate_rows
                .iter()
                .filter(|(t, _, rc, _)| *rc == c && *t < ts)
                .max_by_key(|(t, line, _, _)| (*t, *line));
            expected.push(match rate {
                Some((_, _, _, r)) => format!(
                    "p{i},{c},{amount},{r},{}",
                    (amount as f64 * r.parse::<f64>().unwrap()).round() as i64
                ),
                None => format!("p{i},{c},{amount},,"),
            });
        }
        payments.push_str("12,p-bad,EUR\n");
        expected.sort();
        LunchFixture {
            rates: write(dir, "rates.csv", &rates),
            payments: write(dir, "payments.csv", &payments),
            expected,
        }
    }
}

/// What `word-count` must print for `text`: `WORD,COUNT` lines, sorted.
pub(crate) fn word_counts(text: &str) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(w.to_lowercase()).or_default() += 1;
    }
    counts.iter().map(|(w, n)| format!("{w},{n}")).collect()
}
