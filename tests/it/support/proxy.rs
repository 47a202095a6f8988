//! A TCP forwarder in front of a server (the S3 server): a slow uplink when
//! throttled (bytes from the client to the server go at most `bytes_per_sec`;
//! answers are not slowed), and an outage the test controls with
//! [`SlowLink::cut`] while the server itself keeps its state; with
//! [`SlowLink::recording`], a copy of every byte sent to the server (what went
//! over the wire, for "no plaintext left the host" tests). Stops accepting and
//! cuts every connection on Drop.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one connection's client sent to the server, in order.
type Stream = Arc<Mutex<Vec<u8>>>;

/// Every connection's [`Stream`], in the order they were accepted.
type Recording = Arc<Mutex<Vec<Stream>>>;

pub struct SlowLink {
    pub port: u16,
    recording: Option<Recording>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

/// Copies `from` to `to`, at most `rate` bytes a second (0: unlimited), appending what it
/// copied to `record` when there is one.
fn pump(mut from: TcpStream, mut to: TcpStream, rate: u64, record: Option<Stream>) {
    let chunk = if rate == 0 {
        64 * 1024
    } else {
        (rate / 10).max(1) as usize
    };
    let mut buf = vec![0u8; chunk];
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(record) = &record {
            record.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl SlowLink {
    /// Forwards 127.0.0.1:<port> to 127.0.0.1:`target`, uploads at `bytes_per_sec`.
    pub fn new(target: u16, bytes_per_sec: u64) -> SlowLink {
        SlowLink::start(target, bytes_per_sec, None)
    }

    /// Forwards at full speed and keeps a copy of everything sent to `target`.
    pub fn recording(target: u16) -> SlowLink {
        SlowLink::start(target, 0, Some(Recording::default()))
    }

    /// What the clients sent so far, one byte string per connection (none unless made by
    /// [`SlowLink::recording`]).
    pub fn sent(&self) -> Vec<Vec<u8>> {
        let Some(recording) = &self.recording else {
            return Vec::new();
        };
        let streams = recording.lock().unwrap();
        streams.iter().map(|s| s.lock().unwrap().clone()).collect()
    }

    fn start(target: u16, bytes_per_sec: u64, recording: Option<Recording>) -> SlowLink {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("binding the proxy");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (stop2, conns2, record) = (stop.clone(), conns.clone(), recording.clone());
        let accept = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let mut all = conns2.lock().unwrap();
                        all.push(client.try_clone().unwrap());
                        all.push(server.try_clone().unwrap());
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        let record = record.as_ref().map(|r| {
                            let stream = Stream::default();
                            r.lock().unwrap().push(stream.clone());
                            stream
                        });
                        std::thread::spawn(move || pump(c2, s2, bytes_per_sec, record));
                        std::thread::spawn(move || pump(server, client, 0, None));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        SlowLink {
            port,
            recording,
            stop,
            conns,
            accept: Some(accept),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts every connection and refuses new ones from now on.
    pub fn cut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for conn in self.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.cut();
    }
}
