//! The request page, measured in a real browser: it must read well from a phone (360 px) to a
//! wide screen (2000 px). It is the page learners screenshot, and an HTML table left to size
//! its own columns lets one long `User-Agent` push the explanations off the screen.
//!
//! The page is measured as the server serves it: the lab's web server runs in this process on
//! port 0, and headless Chromium loads `/` in windows of several widths. For each width the
//! test asks the browser for the layout and checks that
//!
//! - the page does not scroll sideways (`scrollWidth` of the page ≤ its `clientWidth`);
//! - every "what it is for" cell (`.purpose`) is wide enough to read: at least 200 px on a
//!   desktop, the whole width of the page on a phone, where each field is one block;
//! - no field name breaks over lines (`Upgrade-` / `Insecure-` / `Requests`);
//! - where name, value and explanation sit side by side, their first lines start at one height.
//!
//! The test drives Chromium over the DevTools protocol, the one browser tools and debuggers
//! use, on a pipe rather than a network port: with `--remote-debugging-pipe` Chromium reads
//! commands on its file descriptor 3 and writes answers and events on 4, each a JSON object
//! ended by a NUL byte. The commands, in order: `Target.createTarget` opens a tab and
//! `Target.attachToTarget` a session on it; then for each width
//! `Emulation.setDeviceMetricsOverride` sizes the window (as a phone or a desktop),
//! `Page.navigate` loads the page, the `Page.loadEventFired` event says it has loaded, and
//! `Runtime.evaluate` runs [`MEASURE`] in it and returns the numbers. The page itself has no
//! JavaScript; the test brings its own.
//!
//! Every wait is bounded ([`WAIT`]); a wait that runs out fails the test, and dropping the
//! [`Browser`] asks Chromium to close, kills what is left of it, and removes its temporary
//! profile.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, PipeWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use tempfile::TempDir;

use socket_lab::Endpoint;
use socket_lab::http::server::{HttpConfig, HttpServer};

/// Longest any one wait on the browser may take. Starting Chromium on a busy machine takes
/// seconds; a page from loopback, milliseconds.
const WAIT: Duration = Duration::from_secs(30);

/// How long Chromium gets to close by itself before what is left of it is killed.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The narrowest "what it is for" column that still reads: a few words a line.
const MIN_PURPOSE: f64 = 200.0;

/// One browser window the page is measured in.
struct Window {
    width: u32,
    height: u32,
    /// Emulate a phone: a touch screen whose layout width comes from the page's viewport
    /// line (without one a phone lays the page out 980 px wide and shrinks it).
    phone: bool,
}

const WINDOWS: [Window; 5] = [
    Window {
        width: 360,
        height: 740,
        phone: true,
    },
    Window {
        width: 400,
        height: 800,
        phone: true,
    },
    Window {
        width: 800,
        height: 900,
        phone: false,
    },
    Window {
        width: 1200,
        height: 900,
        phone: false,
    },
    Window {
        width: 2000,
        height: 1000,
        phone: false,
    },
];

/// The layout questions, asked in the loaded page. A cell's lines are the rectangles of the
/// text in it (`Range.getClientRects`): one per line it wraps to.
const MEASURE: &str = r#"(() => {
  const root = document.documentElement;
  const body = getComputedStyle(document.body);
  const lines = cell => {
    const range = document.createRange();
    range.selectNodeContents(cell);
    return [...range.getClientRects()].filter(line => line.width > 0);
  };
  const top = cell => {
    const tops = lines(cell).map(line => line.top);
    return tops.length ? Math.min(...tops) : null;
  };
  return {
    viewport: window.innerWidth,
    client: root.clientWidth,
    scroll: root.scrollWidth,
    content: document.body.clientWidth - parseFloat(body.paddingLeft) - parseFloat(body.paddingRight),
    rows: [...document.querySelectorAll('tr')]
      .filter(row => row.querySelector('.purpose'))
      .map(row => {
        const [name, value, purpose] = row.children;
        return {
          name: name.textContent,
          name_lines: new Set(lines(name).map(line => Math.round(line.top))).size,
          tops: [top(name), top(value), top(purpose)],
          lefts: [name, value, purpose].map(cell => cell.getBoundingClientRect().left),
          purpose_width: purpose.getBoundingClientRect().width,
        };
      }),
  };
})()"#;

/// What [`MEASURE`] returns, in CSS pixels.
#[derive(Debug, Deserialize)]
struct Layout {
    /// The window's layout width (`innerWidth`).
    viewport: f64,
    /// The page's visible width and the width of everything on it.
    client: f64,
    scroll: f64,
    /// The width of the body's content: what a stacked cell should fill.
    content: f64,
    rows: Vec<Row>,
}

/// One row of a field table: a name, its value, what it is for.
#[derive(Debug, Deserialize)]
struct Row {
    name: String,
    name_lines: usize,
    /// The top of each cell's first line (`None` for a cell with no text).
    tops: [Option<f64>; 3],
    lefts: [f64; 3],
    purpose_width: f64,
}

#[test]
#[cfg_attr(
    not(has_chromium),
    ignore = "chromium is not installed (.ci/run installs it)"
)]
fn the_request_page_reads_well_from_a_phone_to_a_wide_screen() {
    let server = HttpServer::bind(HttpConfig {
        endpoint: Endpoint::inet("127.0.0.1", 0),
        ..HttpConfig::default()
    })
    .expect("bind 127.0.0.1:0")
    .spawn(Arc::new(|_event| {}));
    let url = format!("http://{}/", server.addr);

    let mut browser = Browser::launch();
    let tab = browser.open_tab();
    let mut problems = Vec::new();
    for window in &WINDOWS {
        let layout = browser.measure(&tab, &url, window);
        problems.extend(judge(window, &layout));
    }
    drop(browser);
    server.stop().expect("the server stops cleanly");
    assert!(
        problems.is_empty(),
        "the request page does not read well:\n{}",
        problems.join("\n")
    );
}

/// What is wrong with the page in `window`: nothing, or a paragraph that names the width, the
/// scroll width and the narrowest explanation, then one line per problem.
fn judge(window: &Window, layout: &Layout) -> Option<String> {
    let Some(narrowest) = layout
        .rows
        .iter()
        .min_by(|a, b| a.purpose_width.total_cmp(&b.purpose_width))
    else {
        return Some(format!(
            "at {} px: no row has a \"what it is for\" cell (class=\"purpose\")",
            window.width
        ));
    };
    let mut problems = Vec::new();
    if layout.viewport != f64::from(window.width) {
        problems.push(format!(
            "the page is laid out {} px wide, not {} (is the viewport line missing?)",
            layout.viewport, window.width
        ));
    }
    // Chromium's longest value and name: if these rows are missing, the test measured too
    // little.
    for name in ["User-Agent", "Upgrade-Insecure-Requests"] {
        if !layout.rows.iter().any(|row| row.name == name) {
            problems.push(format!("no row for {name}"));
        }
    }
    if layout.scroll > layout.client {
        problems.push(format!(
            "the page scrolls sideways: its content is {} px wide in a {} px window",
            layout.scroll, layout.client
        ));
    }
    for row in &layout.rows {
        let name = &row.name;
        let width = row.purpose_width;
        // One pixel of slack: widths are fractional.
        if window.phone && width < layout.content - 1.0 {
            problems.push(format!(
                "what {name} is for is {width:.0} px wide, not the page's {:.0} px",
                layout.content
            ));
        }
        if !window.phone && width < MIN_PURPOSE {
            problems.push(format!(
                "what {name} is for is {width:.0} px wide, under {MIN_PURPOSE} px"
            ));
        }
        if row.name_lines > 1 {
            problems.push(format!(
                "the name {name} breaks over {} lines",
                row.name_lines
            ));
        }
        let [name_left, value_left, purpose_left] = row.lefts;
        let side_by_side = name_left < value_left && value_left < purpose_left;
        let tops: Vec<f64> = row.tops.iter().flatten().copied().collect();
        let highest = tops.iter().copied().fold(f64::INFINITY, f64::min);
        let lowest = tops.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // A few pixels: a 13 px value and a 16 px name on one baseline start 3 px apart; a
        // cell centred beside a two-line neighbour starts half a line (11 px) lower.
        if side_by_side && lowest - highest > 5.0 {
            problems.push(format!(
                "the first lines of the {name} row start {:.0} px apart",
                lowest - highest
            ));
        }
    }
    if problems.is_empty() {
        return None;
    }
    Some(format!(
        "at {} px ({}): scroll width {} px, client width {} px, narrowest \"what it is for\" \
         cell {:.0} px ({}):\n  - {}",
        window.width,
        if window.phone { "phone" } else { "desktop" },
        layout.scroll,
        layout.client,
        narrowest.purpose_width,
        narrowest.name,
        problems.join("\n  - ")
    ))
}

/// A headless Chromium under the DevTools protocol, on a pipe.
struct Browser {
    child: Child,
    /// Commands go to Chromium's file descriptor 3.
    commands: PipeWriter,
    /// Answers and events from its file descriptor 4, one parsed message each, read by a
    /// thread so every wait for one can have a deadline.
    messages: Receiver<Result<Value, String>>,
    /// Events that arrived while the test waited for an answer, kept for a later wait.
    events: Vec<Value>,
    next_id: u64,
    /// Chromium's stderr, shown when it stops answering.
    stderr_log: PathBuf,
    /// The profile and the log; removed after Chromium is gone (fields drop after `drop`).
    _dir: TempDir,
}

/// A session attached to one tab.
struct Tab {
    session: String,
}

impl Browser {
    fn launch() -> Browser {
        let dir = tempfile::tempdir().expect("a temporary directory for chromium's profile");
        let stderr_log = dir.path().join("chromium.stderr");
        let stderr = File::create(&stderr_log).expect("create chromium's stderr log");
        let (command_reader, commands) = std::io::pipe().expect("a pipe for DevTools commands");
        let (replies, reply_writer) = std::io::pipe().expect("a pipe for DevTools answers");

        let mut command = Command::new("chromium");
        command
            .args(common::HEADLESS_CHROMIUM)
            .arg("--remote-debugging-pipe")
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Its own process group, so its helper processes can be ended with it.
            .process_group(0);
        let (command_fd, reply_fd) = (command_reader.as_raw_fd(), reply_writer.as_raw_fd());
        // SAFETY: the closure runs in the child between fork and exec, and calls only fcntl
        // and dup2, which are async-signal-safe, on descriptors this process holds open.
        unsafe {
            command.pre_exec(move || {
                // Copy both ends above 4 first, so that placing one on 3 or 4 cannot close
                // the other if it happened to be there. The copies close on exec; dup2's
                // results (3 and 4) do not.
                let command_copy = libc::fcntl(command_fd, libc::F_DUPFD_CLOEXEC, 10);
                let reply_copy = libc::fcntl(reply_fd, libc::F_DUPFD_CLOEXEC, 10);
                if command_copy < 0
                    || reply_copy < 0
                    || libc::dup2(command_copy, 3) < 0
                    || libc::dup2(reply_copy, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        // Chromium has its own copies; with ours closed, its exit is the answers' end of file.
        drop((command_reader, reply_writer));

        let (sender, messages) = mpsc::channel();
        thread::spawn(move || {
            let mut replies = BufReader::new(replies);
            loop {
                let mut message = Vec::new();
                match replies.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if message.last() == Some(&0) {
                    message.pop();
                }
                let parsed = serde_json::from_slice(&message)
                    .map_err(|error| format!("{error} in {:?}", String::from_utf8_lossy(&message)));
                if sender.send(parsed).is_err() {
                    return;
                }
            }
        });
        Browser {
            child,
            commands,
            messages,
            events: Vec::new(),
            next_id: 0,
            stderr_log,
            _dir: dir,
        }
    }

    /// Opens a blank tab and attaches a session to it ("flatten": the session's messages
    /// come on this same pipe, marked with its id).
    fn open_tab(&mut self) -> Tab {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].clone();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        let Some(session) = attached["sessionId"].as_str() else {
            panic!("Target.attachToTarget answered without a sessionId: {attached}");
        };
        let tab = Tab {
            session: session.to_string(),
        };
        self.call(Some(&tab), "Page.enable", json!({}));
        tab
    }

    /// Loads `url` in `tab` sized as `window`, and measures it.
    fn measure(&mut self, tab: &Tab, url: &str, window: &Window) -> Layout {
        self.call(
            Some(tab),
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": window.width,
                "height": window.height,
                "deviceScaleFactor": 1,
                "mobile": window.phone,
            }),
        );
        // A load event of an earlier page must not count as this one's.
        self.events
            .retain(|event| event["method"] != "Page.loadEventFired");
        let navigation = self.call(Some(tab), "Page.navigate", json!({"url": url}));
        if let Some(error) = navigation.get("errorText") {
            panic!("chromium could not load {url}: {error}");
        }
        self.wait_for_event(tab, "Page.loadEventFired");
        let evaluated = self.call(
            Some(tab),
            "Runtime.evaluate",
            json!({"expression": MEASURE, "returnByValue": true}),
        );
        if let Some(exception) = evaluated.get("exceptionDetails") {
            panic!("the measuring script failed: {exception}");
        }
        serde_json::from_value(evaluated["result"]["value"].clone())
            .unwrap_or_else(|error| panic!("the measuring script returned {evaluated} ({error})"))
    }

    /// Sends one command and waits for its answer; events that come first are kept.
    fn call(&mut self, tab: Option<&Tab>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(tab) = tab {
            message["sessionId"] = json!(tab.session);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        if let Err(error) = self.commands.write_all(&bytes) {
            panic!(
                "cannot send {method} to chromium: {error}{}",
                self.stderr_tail()
            );
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let message = self.next_message(method, deadline);
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("chromium refused {method}: {error}");
                }
                return message["result"].clone();
            }
            self.events.push(message);
        }
    }

    /// Waits for the event `method` from `tab`'s session.
    fn wait_for_event(&mut self, tab: &Tab, method: &str) -> Value {
        let is_it =
            |message: &Value| message["method"] == method && message["sessionId"] == tab.session;
        if let Some(kept) = self.events.iter().position(is_it) {
            return self.events.remove(kept);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let message = self.next_message(method, deadline);
            if is_it(&message) {
                return message;
            }
            self.events.push(message);
        }
    }

    fn next_message(&mut self, waiting_for: &str, deadline: Instant) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(left) {
            Ok(Ok(message)) => message,
            Ok(Err(error)) => panic!("chromium sent a message that is not JSON: {error}"),
            Err(RecvTimeoutError::Timeout) => panic!(
                "chromium did not answer {waiting_for} within {WAIT:?}{}",
                self.stderr_tail()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "chromium closed its DevTools pipe while the test waited for {waiting_for}{}",
                self.stderr_tail()
            ),
        }
    }

    /// The last lines Chromium wrote to stderr, for a failure message.
    fn stderr_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        format!("\nchromium's stderr ends with:\n{tail}")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask Chromium to close: it ends its helper processes and lets go of the profile. When
        // it has, the answers' pipe reaches end of file.
        let _ = self
            .commands
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + CLOSE_WAIT;
        while self
            .messages
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
        {}
        // Then end whatever is left of its process group: all of it, if it did not close in
        // time. The group's id is the pid of our child, which stays ours until `wait` below.
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
