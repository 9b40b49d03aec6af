//! Human-readable descriptions of a topology: text in the layout Kafka Streams prints, and
//! Mermaid and Graphviz diagrams.

use std::fmt::Write;

use super::{NodeKind, Topology};
use crate::ids::TopicName;

fn topic_list(topics: &[TopicName]) -> String {
    topics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn ident(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl Topology {
    /// The topology as text: sub-topologies, their nodes with edges, stores and topics.
    ///
    /// Internal topics show as `<app>-name`: their real name gets the application id.
    pub fn describe(&self) -> String {
        let mut out = String::from("Topologies:\n");
        for sub in &self.subtopologies {
            let _ = writeln!(out, "   Sub-topology: {}", sub.id);
            for &id in &sub.nodes {
                let node = &self.nodes[id];
                let _ = match &node.kind {
                    NodeKind::Source { topics } => writeln!(
                        out,
                        "    Source: {} (topics: [{}])",
                        node.name,
                        topic_list(topics)
                    ),
                    NodeKind::Processor => writeln!(
                        out,
                        "    Processor: {} (stores: [{}])",
                        node.name,
                        node.stores.join(", ")
                    ),
                    NodeKind::Sink { topic } => {
                        writeln!(out, "    Sink: {} (topic: {topic})", node.name)
                    }
                };
                let children: Vec<&str> = self.children[id]
                    .iter()
                    .map(|&c| self.nodes[c].name.as_str())
                    .collect();
                if !children.is_empty() {
                    let _ = writeln!(out, "      --> {}", children.join(", "));
                }
                let parents: Vec<&str> = node
                    .parents
                    .iter()
                    .map(|&p| self.nodes[p].name.as_str())
                    .collect();
                if !parents.is_empty() {
                    let _ = writeln!(out, "      <-- {}", parents.join(", "));
                }
            }
            out.push('\n');
        }
        for g in self.global_stores.values() {
            let _ = writeln!(
                out,
                "   Global store: {} (topic: {}, every partition)",
                g.name, g.topic
            );
        }
        out
    }

    /// The topology as a Mermaid flowchart: one subgraph per sub-topology, topics as
    /// rounded nodes, stores as cylinders.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        let mut topics = std::collections::BTreeSet::new();
        for sub in &self.subtopologies {
            let _ = writeln!(out, "  subgraph sub{}[\"Sub-topology {}\"]", sub.id, sub.id);
            for &id in &sub.nodes {
                let node = &self.nodes[id];
                let _ = writeln!(out, "    n{id}[\"{}\"]", node.name);
            }
            out.push_str("  end\n");
            for &id in &sub.nodes {
                let node = &self.nodes[id];
                for &c in &self.children[id] {
                    let _ = writeln!(out, "  n{id} --> n{c}");
                }
                match &node.kind {
                    NodeKind::Source { topics: ts } => {
                        for t in ts {
                            topics.insert(t.to_string());
                            let _ = writeln!(out, "  t_{} --> n{id}", ident(&t.to_string()));
                        }
                    }
                    NodeKind::Sink { topic } => {
                        topics.insert(topic.to_string());
                        let _ = writeln!(out, "  n{id} --> t_{}", ident(&topic.to_string()));
                    }
                    NodeKind::Processor => {}
                }
                for s in &node.stores {
                    let _ = writeln!(out, "  n{id} -.- s_{}[(\"{s}\")]", ident(s));
                }
            }
        }
        for t in topics {
            let _ = writeln!(out, "  t_{}([\"{t}\"])", ident(&t));
        }
        out
    }

    /// The topology in Graphviz `dot` syntax.
    pub fn to_dot(&self) -> String {
        let mut out =
            String::from("digraph topology {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
        let mut topics = std::collections::BTreeSet::new();
        for sub in &self.subtopologies {
            let _ = writeln!(
                out,
                "  subgraph cluster_{} {{\n    label=\"Sub-topology {}\";",
                sub.id, sub.id
            );
            for &id in &sub.nodes {
                let _ = writeln!(
                    out,
                    "    n{id} [label=\"{}\", shape=box];",
                    self.nodes[id].name
                );
            }
            out.push_str("  }\n");
            for &id in &sub.nodes {
                let node = &self.nodes[id];
                for &c in &self.children[id] {
                    let _ = writeln!(out, "  n{id} -> n{c};");
                }
                match &node.kind {
                    NodeKind::Source { topics: ts } => {
                        for t in ts {
                            topics.insert(t.to_string());
                            let _ = writeln!(out, "  \"topic:{t}\" -> n{id};");
                        }
                    }
                    NodeKind::Sink { topic } => {
                        topics.insert(topic.to_string());
                        let _ = writeln!(out, "  n{id} -> \"topic:{topic}\";");
                    }
                    NodeKind::Processor => {}
                }
                for s in &node.stores {
                    let _ = writeln!(out, "  n{id} -> \"store:{s}\" [style=dashed, dir=none];");
                }
            }
        }
        for t in topics {
            let _ = writeln!(out, "  \"topic:{t}\" [label=\"{t}\", shape=ellipse];");
        }
        for s in self.stores.keys() {
            let _ = writeln!(out, "  \"store:{s}\" [label=\"{s}\", shape=cylinder];");
        }
        out.push_str("}\n");
        out
    }
}
