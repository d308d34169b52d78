//! Progress while a run goes: one bar per stage on a terminal, plain periodic lines otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::runtime::{Envelope, StageCounters, StageReport};

/// What the display shows per stage: id, type, counters and its input queue (to show depth).
pub type StageView = (
    String,
    String,
    Arc<StageCounters>,
    Option<Receiver<Envelope>>,
);

#[derive(Clone, Copy, Debug)]
pub enum Progress {
    Off,
    Bars,
    /// A line to stderr every interval.
    Lines(Duration),
}

impl Progress {
    /// Bars on a terminal, a line every 5 s otherwise.
    pub fn auto() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Bars
        } else {
            Progress::Lines(Duration::from_secs(5))
        }
    }

    pub fn start(self, stages: Vec<StageView>) -> ProgressHandle {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = match self {
            Progress::Off => None,
            Progress::Bars => Some(std::thread::spawn(move || bars(stages, &stopped))),
            Progress::Lines(every) => {
                Some(std::thread::spawn(move || lines(stages, every, &stopped)))
            }
        };
        ProgressHandle {
            stop: Some(stop),
            thread,
        }
    }
}

pub struct ProgressHandle {
    /// Dropped to stop the display: the thread wakes at once instead of finishing a sleep
    /// (a 50–100 ms sleep added that much to every short run).
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressHandle {
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits `d`, or less if the display is stopped; true while it should go on.
fn wait(stopped: &Receiver<()>, d: Duration) -> bool {
    matches!(stopped.recv_timeout(d), Err(RecvTimeoutError::Timeout))
}

fn status(c: &StageCounters, rx: &Option<Receiver<Envelope>>) -> String {
    let mut s = format!(
        "in {} out {}",
        c.items_in.load(Ordering::Relaxed),
        c.items_out.load(Ordering::Relaxed)
    );
    if let Some(rx) = rx {
        s.push_str(&format!(" queued {}", rx.len()));
    }
    let e = c.errors.load(Ordering::Relaxed);
    if e > 0 {
        s.push_str(&format!(" errors {e}"));
    }
    if c.done.load(Ordering::Relaxed) {
        s.push_str(" done");
    }
    s
}

fn bars(stages: Vec<StageView>, stopped: &Receiver<()>) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    let style = ProgressStyle::with_template("{spinner} {prefix:<28} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bars: Vec<ProgressBar> = stages
        .iter()
        .map(|(id, ty, _, _)| {
            let b = multi.add(ProgressBar::new_spinner());
            b.set_style(style.clone());
            b.set_prefix(format!("{id} ({ty})"));
            b
        })
        .collect();
    loop {
        for (b, (_, _, c, rx)) in bars.iter().zip(&stages) {
            b.set_message(status(c, rx));
            b.tick();
        }
        if !wait(stopped, Duration::from_millis(100)) {
            break;
        }
    }
    for b in &bars {
        b.finish_and_clear();
    }
}

fn lines(stages: Vec<StageView>, every: Duration, stopped: &Receiver<()>) {
    let t0 = Instant::now();
    let mut next = every;
    while wait(stopped, next.saturating_sub(t0.elapsed())) {
        if t0.elapsed() >= next {
            next += every;
            let parts: Vec<String> = stages
                .iter()
                .map(|(id, _, c, rx)| format!("{id}: {}", status(c, rx)))
                .collect();
            eprintln!(
                "[{:>6.1}s] {}",
                t0.elapsed().as_secs_f64(),
                parts.join(" | ")
            );
        }
    }
}

/// The end-of-run table.
pub fn summary_table(stages: &[StageReport], wall: f64) -> String {
    let mut out = format!(
        "{:<20} {:<18} {:>7} {:>8} {:>8} {:>7} {:>9} {:>10}\n",
        "stage", "type", "workers", "in", "out", "errors", "busy s", "items/s"
    );
    for s in stages {
        out.push_str(&format!(
            "{:<20} {:<18} {:>7} {:>8} {:>8} {:>7} {:>9.3} {:>10.1}\n",
            s.id,
            s.stage,
            s.workers,
            s.items_in,
            s.items_out,
            s.errors,
            s.busy_seconds,
            s.throughput_per_busy_second
        ));
    }
    out.push_str(&format!("wall time {wall:.3} s"));
    out
}
