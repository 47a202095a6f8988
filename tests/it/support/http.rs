//! A real HTTP listener standing in for alert webhooks (generic, Slack, PagerDuty) and
//! heartbeat URLs: records every request and answers with a scripted list of status codes, or
//! never answers at all (`hang`) to prove pgbak's timeouts.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as the listener received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as on the request line.
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {:?}", self.body_text()))
    }
}

#[derive(Debug, Clone)]
enum Mode {
    /// Status codes for the 1st, 2nd, ... request; the last one repeats.
    Script(Vec<u16>),
    /// Read the request, record it, never answer.
    Hang,
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Request>>,
    arrived: Condvar,
}

/// A listener on 127.0.0.1 (random port) served by a background thread; stops on Drop.
pub struct HttpListener {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpListener {
    /// Answers the n-th request with `statuses[n]` (the last one repeats; `[]` means 200).
    pub fn new(statuses: &[u16]) -> Self {
        Self::start(Mode::Script(statuses.to_vec()))
    }

    /// Answers every request with 200.
    pub fn ok() -> Self {
        Self::new(&[200])
    }

    /// Accepts and reads every request, records it, and never answers.
    pub fn hang() -> Self {
        Self::start(Mode::Hang)
    }

    fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("binding the HTTP listener");
        let addr = listener.local_addr().expect("listener address");
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(listener, mode, state, stop))
        };
        HttpListener {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/hook`
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// `http://127.0.0.1:PORT` (append any path).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until at least `n` requests arrived and returns them all; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut requests = self
            .state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while requests.len() < n {
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "expected {n} request(s) at {} within {timeout:?}, got {}: {:?}",
                    self.url(),
                    requests.len(),
                    *requests
                );
            }
            requests = self
                .state
                .arrived
                .wait_timeout(requests, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        requests.clone()
    }
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes accept()
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, mode: Mode, state: Arc<State>, stop: Arc<AtomicBool>) {
    let mut served = 0usize;
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let status = match &mode {
            Mode::Script(codes) => Some(codes.get(served).or(codes.last()).copied().unwrap_or(200)),
            Mode::Hang => None,
        };
        served += 1;
        let (state, stop) = (state.clone(), stop.clone());
        // Detached: a handler ends after answering, or (hang mode) once `stop` is set.
        std::thread::spawn(move || serve(stream, status, &state, &stop));
    }
}

/// Reads one request (Connection: close on the answer, so one per connection), records it,
/// then answers with `status`, or with nothing until the listener stops.
fn serve(stream: TcpStream, status: Option<u16>, state: &State, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    {
        let mut requests = state.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.push(request);
        state.arrived.notify_all();
    }
    match status {
        Some(code) => {
            let body = match code {
                204 | 304 => "",
                200..=299 => "ok",
                _ => "scripted failure",
            };
            let response = format!(
                "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                reason(code),
                body.len()
            );
            let mut stream = stream;
            let _ = stream.write_all(response.as_bytes());
            let _ = stream.flush();
        }
        None => {
            // Hold the connection open, unanswered, until the listener is dropped.
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            break;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line).ok()?;
            let size_hex = size_line.trim().split(';').next().unwrap_or("0");
            let size = usize::from_str_radix(size_hex, 16).ok()?;
            let mut chunk = vec![0; size + 2]; // data + CRLF
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
