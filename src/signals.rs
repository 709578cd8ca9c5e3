//! SIGINT, SIGTERM and SIGHUP: how a run stops, and the one JSON object it
//! still owes stdout.
//!
//! The handler (the `ctrlc` crate, with its `termination` feature) runs on
//! a thread of its own, not in signal context, so it may lock, write and
//! exit. A command that can stop cleanly (`gc`, `restore`) only sets
//! [`QUIT`] on the first signal: indexing and planning give up, the sweep
//! stops between two deletions, the prompt returns, and the command writes
//! its report as usual. A second signal, or the first one for a command
//! that changes nothing (`verify`, `du`, `trash list`) or cannot stop
//! between two steps (`trash empty`), exits at once: after the report
//! being written, if one is (never half of one), or with a short
//! interruption object of its own under `--json`. The kernel lock goes
//! with the process.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime};

use regsweep::ExitStatus;
use regsweep::interrupt::Phase;
use regsweep::report::StopReport;

pub use crate::cli::QUIT;

/// What the handler needs to know of the command that runs.
struct Context {
    command: &'static str,
    json: bool,
    target: Option<PathBuf>,
    dry_run: Option<bool>,
    started: Option<SystemTime>,
    /// The first signal only sets [`QUIT`].
    stops_cleanly: bool,
    /// The exit code of a run that a signal ended.
    interrupted: ExitStatus,
}

static CONTEXT: Mutex<Context> = Mutex::new(Context {
    command: "regsweep",
    json: false,
    target: None,
    dry_run: None,
    started: None,
    stops_cleanly: false,
    interrupted: ExitStatus::Failed,
});

/// The exit code of what was written on stdout, once it was: held while
/// the final output is written, so that exiting at once never cuts it.
static WRITTEN: Mutex<Option<ExitStatus>> = Mutex::new(None);

/// The phase last seen, for messages: 0 none, then [`Phase`] + 1.
static PHASE: AtomicU8 = AtomicU8::new(0);

fn context() -> std::sync::MutexGuard<'static, Context> {
    CONTEXT.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a command meets signals.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// The first signal asks it to stop cleanly; it exits with `code`.
    StopsCleanly(ExitStatus),
    /// Every signal ends it at once, with `code`.
    ExitsAtOnce(ExitStatus),
}

/// Installs the handler for `command` (once per process).
pub fn install(command: &'static str, json: bool, mode: Mode) {
    {
        let mut ctx = context();
        ctx.command = command;
        ctx.json = json;
        ctx.started = Some(SystemTime::now());
        (ctx.stops_cleanly, ctx.interrupted) = match mode {
            Mode::StopsCleanly(code) => (true, code),
            Mode::ExitsAtOnce(code) => (false, code),
        };
    }
    if let Err(e) = ctrlc::set_handler(on_signal) {
        eprintln!("regsweep: warning: cannot catch SIGINT, SIGTERM and SIGHUP: {e}");
    }
}

/// When the run started.
pub fn started() -> SystemTime {
    context().started.unwrap_or_else(SystemTime::now)
}

/// Names what the run works on, for a report written on exit.
pub fn describe_target(target: PathBuf, dry_run: Option<bool>) {
    let mut ctx = context();
    ctx.target = Some(target);
    ctx.dry_run = dry_run;
}

/// What the run works on, as last named.
pub fn target() -> Option<PathBuf> {
    context().target.clone()
}

fn on_signal() {
    let again = QUIT.swap(true, Ordering::SeqCst);
    let stops_cleanly = context().stops_cleanly;
    if stops_cleanly && !again {
        let what = match phase() {
            Some(Phase::Sweep) => "stopping between two deletions (or moves)",
            _ => "stopping; nothing was deleted",
        };
        eprintln!("regsweep: interrupted; {what} (interrupt again to exit now)");
        return;
    }
    exit_now(again);
}

fn phase() -> Option<Phase> {
    match PHASE.load(Ordering::Relaxed) {
        1 => Some(Phase::Index),
        2 => Some(Phase::Plan),
        3 => Some(Phase::Prompt),
        4 => Some(Phase::Sweep),
        _ => None,
    }
}

/// Ends the process now: after the output being written, if it is, with
/// its exit code; otherwise with the interruption's code, and under
/// `--json` an object saying so.
fn exit_now(again: bool) -> ! {
    let mut written = WRITTEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(code) = *written {
        std::process::exit(code as i32);
    }
    let ctx = context();
    let code = ctx.interrupted;
    let during = phase();
    let what = match during {
        Some(Phase::Sweep) => {
            "exited at once during the sweep: what was deleted so far is not counted here; the registry is consistent (deletions go in an order that keeps it so), and a re-run finishes the job"
        }
        _ if ctx.stops_cleanly => "exited at once; nothing was deleted",
        _ => "exited at once",
    };
    let error = format!("interrupted{}: {what}", if again { " again" } else { "" });
    eprintln!("regsweep: {error}");
    if ctx.json {
        let started = ctx.started.unwrap_or_else(SystemTime::now);
        let finished = SystemTime::now();
        let report = StopReport {
            regsweep_report: (ctx.command == "gc").then_some(regsweep::report::REPORT_VERSION),
            version: env!("CARGO_PKG_VERSION"),
            command: ctx.command,
            target: ctx.target.clone(),
            dry_run: ctx.dry_run,
            started: regsweep::clock::rfc3339(started),
            finished: regsweep::clock::rfc3339(finished),
            duration_seconds: regsweep::report::seconds_between(started, finished),
            exit_code: code,
            kind: "interrupted",
            error,
            errors: Vec::new(),
            interrupted: true,
            interrupted_during: during.map(Phase::as_str),
        };
        let mut stdout = std::io::stdout().lock();
        let _ = report.write_json(&mut stdout);
        let _ = stdout.flush();
    }
    *written = Some(code);
    std::process::exit(code as i32);
}

/// Writes the command's final stdout through `write`, which an exit on a
/// signal waits for; `code` is what the process then exits with.
pub fn write_output<T>(code: ExitStatus, write: impl FnOnce() -> T) -> T {
    let mut written = WRITTEN.lock().unwrap_or_else(|p| p.into_inner());
    let result = write();
    *written = Some(code);
    result
}

/// Told of each checkpoint the library passes: keeps the phase for
/// messages, and serves the test hook [`PAUSE_ENV`].
pub fn observe(phase: Phase) {
    let code = phase as u8 + 1;
    // A load first: the checkpoint runs once per file read, on every
    // thread, and a store each time would bounce the cache line.
    if PHASE.load(Ordering::Relaxed) != code {
        PHASE.store(code, Ordering::Relaxed);
    }
    if let Some(pause) = PAUSE.get_or_init(Pause::from_env) {
        pause.reached(phase);
    }
}

/// Test hook, never for production use: `REGSWEEP_TEST_PAUSE_AT=PHASE[:N][:stuck]`
/// (PHASE `index`, `plan`, `prompt` or `sweep`) makes the run announce on
/// stderr `regsweep: test pause at PHASE (pid P)` at the Nth checkpoint of
/// that phase (default 1), then hold every thread that reaches a
/// checkpoint of that phase until a signal arrives (60 s at most), so
/// that a test can signal it at a known point. `stuck` holds them even
/// after the first signal, as a hung filesystem call would. At the prompt
/// it only announces (the question waits itself). It only waits: what the
/// run decides and deletes is the same with or without it. Unset, it costs
/// one check of a static per checkpoint.
pub const PAUSE_ENV: &str = "REGSWEEP_TEST_PAUSE_AT";

static PAUSE: OnceLock<Option<Pause>> = OnceLock::new();

struct Pause {
    phase: Phase,
    at: u64,
    stuck: bool,
    seen: std::sync::atomic::AtomicU64,
}

impl Pause {
    fn from_env() -> Option<Pause> {
        let spec = std::env::var(PAUSE_ENV).ok()?;
        let mut parts = spec.split(':');
        let phase = match parts.next()? {
            "index" => Phase::Index,
            "plan" => Phase::Plan,
            "prompt" => Phase::Prompt,
            "sweep" => Phase::Sweep,
            _ => return None,
        };
        let mut at = 1;
        let mut stuck = false;
        for part in parts {
            match part {
                "stuck" => stuck = true,
                n => at = n.parse().ok()?,
            }
        }
        Some(Pause {
            phase,
            at,
            stuck,
            seen: Default::default(),
        })
    }

    fn reached(&self, phase: Phase) {
        if phase != self.phase {
            return;
        }
        let seen = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if seen < self.at {
            return;
        }
        if seen == self.at {
            eprintln!(
                "regsweep: test pause at {} (pid {})",
                phase.as_str(),
                std::process::id()
            );
        }
        if phase == Phase::Prompt {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && (self.stuck || !QUIT.load(Ordering::SeqCst)) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
