//! Case results and the three report formats (text on stdout, JSON, JUnit XML), plus
//! live progress on a terminal.

use crate::ReportArgs;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How one case ended.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum Outcome {
    /// Passed.
    Pass,
    /// Failed, with what was expected and what was seen.
    Fail(String),
    /// Not applicable to this provider (e.g. a flow its capabilities rule out), with why.
    Skip(String),
}

/// One case's result.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// Group (`low-level`, `flows`, `hygiene`, ...).
    pub group: String,
    /// Case name.
    pub name: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Wall time in milliseconds.
    pub millis: u128,
}

/// A harness run's report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Suite name (`ras`, `cloudstack`).
    pub suite: String,
    /// The provider command under test.
    pub target: String,
    /// Free-form facts learned about the provider (capabilities, version).
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// Results in execution order.
    pub cases: Vec<CaseResult>,
    #[serde(skip)]
    progress: ProgressBar,
    #[serde(skip)]
    quiet: bool,
}

impl Report {
    /// A new report; shows a spinner when stderr is a terminal.
    pub fn new(suite: &str, target: &str, quiet: bool) -> Self {
        let progress = if std::io::stderr().is_terminal() {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            pb.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed}] {pos} cases, {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        } else {
            ProgressBar::hidden()
        };
        Report {
            suite: suite.into(),
            target: target.into(),
            facts: Default::default(),
            cases: Vec::new(),
            progress,
            quiet,
        }
    }

    /// Shows what is running now.
    pub fn status(&self, msg: impl Into<String>) {
        self.progress.set_message(msg.into());
    }

    /// Prints an informational line (what was verified against what) unless quiet.
    pub fn note(&self, line: impl AsRef<str>) {
        if !self.quiet {
            self.progress.suspend(|| println!("NOTE  {}", line.as_ref()));
        }
    }

    /// Records a case result and prints its line (unless quiet).
    pub fn record(&mut self, group: &str, name: &str, outcome: Outcome, started: Instant) {
        let c = CaseResult { group: group.into(), name: name.into(), outcome, millis: started.elapsed().as_millis() };
        if !self.quiet {
            let line = match &c.outcome {
                Outcome::Pass => format!("PASS  {}/{} ({} ms)", c.group, c.name, c.millis),
                Outcome::Fail(r) => format!("FAIL  {}/{}: {r}", c.group, c.name),
                Outcome::Skip(r) => format!("SKIP  {}/{}: {r}", c.group, c.name),
            };
            self.progress.suspend(|| println!("{line}"));
        }
        self.progress.inc(1);
        self.cases.push(c);
    }

    /// Runs `f` as a case: `Ok(())` passes, `Err(reason)` fails.
    pub fn case<F: FnOnce() -> Result<(), String>>(&mut self, group: &str, name: &str, f: F) -> bool {
        self.status(format!("{group}/{name}"));
        let t = Instant::now();
        let outcome = match f() {
            Ok(()) => Outcome::Pass,
            Err(r) => Outcome::Fail(r),
        };
        let ok = outcome == Outcome::Pass;
        self.record(group, name, outcome, t);
        ok
    }

    /// Counts (passed, failed, skipped).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut p = (0, 0, 0);
        for c in &self.cases {
            match c.outcome {
                Outcome::Pass => p.0 += 1,
                Outcome::Fail(_) => p.1 += 1,
                Outcome::Skip(_) => p.2 += 1,
            }
        }
        p
    }

    /// True when nothing failed and at least one case passed.
    pub fn passed(&self) -> bool {
        let (p, f, _) = self.counts();
        f == 0 && p > 0
    }

    /// Prints the summary and writes the JSON / JUnit files requested; returns [`Report::passed`].
    pub fn finish(self, args: &ReportArgs) -> std::io::Result<bool> {
        self.progress.finish_and_clear();
        let (p, f, s) = self.counts();
        println!("polyvisor check {} against `{}`: {p} passed, {f} failed, {s} skipped", self.suite, self.target);
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_vec_pretty(&self)?)?;
        }
        if let Some(path) = &args.junit {
            std::fs::write(path, self.junit_xml())?;
        }
        std::io::stdout().flush()?;
        Ok(self.passed())
    }

    /// The report as JUnit XML (one testsuite per group).
    pub fn junit_xml(&self) -> String {
        use quick_junit::{NonSuccessKind, Report as JReport, TestCase, TestCaseStatus, TestSuite};
        let mut report = JReport::new(format!("polyvisor-check-{}", self.suite));
        let mut groups: Vec<&str> = Vec::new();
        for c in &self.cases {
            if !groups.contains(&c.group.as_str()) {
                groups.push(&c.group);
            }
        }
        for g in groups {
            let mut suite = TestSuite::new(format!("{}.{g}", self.suite));
            for c in self.cases.iter().filter(|c| c.group == g) {
                let status = match &c.outcome {
                    Outcome::Pass => TestCaseStatus::success(),
                    Outcome::Fail(r) => {
                        let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        s.set_message(r.clone());
                        s
                    }
                    Outcome::Skip(r) => {
                        let mut s = TestCaseStatus::skipped();
                        s.set_message(r.clone());
                        s
                    }
                };
                let mut tc = TestCase::new(c.name.clone(), status);
                tc.set_time(Duration::from_millis(c.millis as u64));
                suite.add_test_case(tc);
            }
            report.add_test_suite(suite);
        }
        report.to_string().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_formats() {
        let mut r = Report::new("ras", "x", true);
        assert!(!r.passed(), "an empty run must not pass");
        r.case("low-level", "ok", || Ok(()));
        r.record("flows", "skipped", Outcome::Skip("no templates".into()), Instant::now());
        assert!(r.passed());
        r.case("low-level", "bad & <broken>", || Err("expected \"x\"".into()));
        assert_eq!(r.counts(), (1, 1, 1));
        assert!(!r.passed());
        let xml = r.junit_xml();
        assert!(xml.contains("ras.low-level") && xml.contains("&lt;broken&gt;"), "{xml}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["cases"][2]["outcome"], "fail");
    }
}
