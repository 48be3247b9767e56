//! One pipeline's statistics on one target, and the table of them all.

use std::collections::BTreeMap;

/// The statistics of one pipeline compiled for one (family, wave size).
pub struct Record {
    pub family: String,
    pub wave: u32,
    pub kernel: String,
    pub precision: String,
    /// By RADV's names: `VGPRs`, `SGPRs`, `Spilled VGPRs`, `Spilled
    /// SGPRs`, `Scratch size`, `LDS size`, `Subgroups per SIMD`, `Code
    /// size`, `Instructions`, `Latency`, `Inverse Throughput`, `Pre-Sched
    /// SGPRs`, ...
    pub stats: BTreeMap<String, f64>,
    pub error: Option<String>,
    /// The child's JSON object, as written to `--json`.
    pub json: serde_json::Value,
}

impl Record {
    pub fn from_json(v: serde_json::Value) -> Record {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let stats = v["stats"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            family: s("family"),
            wave: v["wave"].as_u64().unwrap_or(0) as u32,
            kernel: s("kernel"),
            precision: s("precision"),
            stats,
            error: v["error"].as_str().map(str::to_string),
            json: v,
        }
    }

    pub fn stat(&self, name: &str) -> Option<f64> {
        self.stats.get(name).copied()
    }

    /// VGPRs spilled plus SGPRs spilled.
    pub fn spills(&self) -> f64 {
        self.stat("Spilled VGPRs").unwrap_or(0.0) + self.stat("Spilled SGPRs").unwrap_or(0.0)
    }

    /// Scratch memory per wave, bytes.
    pub fn scratch(&self) -> f64 {
        self.stat("Scratch size").unwrap_or(0.0)
    }

    /// The target's name: `NAVI21 w64`.
    pub fn target(&self) -> String {
        format!("{} w{}", self.family, self.wave)
    }

    /// `VGPRs/waves per SIMD`, then `!spill N` and `!scratch N` where
    /// there are any: one cell of the table.
    pub fn cell(&self) -> String {
        if let Some(e) = &self.error {
            return format!("error: {}", e.chars().take(40).collect::<String>());
        }
        let num = |n: &str| self.stat(n).map_or("?".to_string(), |x| format!("{x}"));
        let mut c = format!("{}/{}", num("VGPRs"), num("Subgroups per SIMD"));
        if self.spills() > 0.0 {
            c.push_str(&format!(" !spill {}", self.spills()));
        }
        if self.scratch() > 0.0 {
            c.push_str(&format!(" !scratch {}", self.scratch()));
        }
        c
    }
}

/// A row per pipeline (kernel and precision), a column per target.
pub struct Table {
    targets: Vec<String>,
    rows: Vec<(String, BTreeMap<String, String>)>,
}

impl Table {
    pub fn of(records: &[Record]) -> Table {
        let mut targets: Vec<String> = Vec::new();
        let mut rows: Vec<(String, BTreeMap<String, String>)> = Vec::new();
        for r in records {
            let t = r.target();
            if !targets.contains(&t) {
                targets.push(t.clone());
            }
            let name = format!("{} [{}]", r.kernel, r.precision);
            let at = match rows.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    rows.push((name, BTreeMap::new()));
                    rows.len() - 1
                }
            };
            rows[at].1.insert(t, r.cell());
        }
        Table { targets, rows }
    }

    /// A Markdown table: `VGPRs/waves per SIMD` per target.
    pub fn render(&self) -> String {
        let mut s = format!("| pipeline | {} |\n", self.targets.join(" | "));
        s.push_str(&format!("|---|{}\n", "---|".repeat(self.targets.len())));
        for (name, cells) in &self.rows {
            let c: Vec<&str> = self
                .targets
                .iter()
                .map(|t| cells.get(t).map_or("", String::as_str))
                .collect();
            s.push_str(&format!("| `{name}` | {} |\n", c.join(" | ")));
        }
        s
    }
}
