//! S3 bookkeeping (issue 10 item 7): a transient failure of the HEAD check after an
//! upload is retried and never deletes a good object; the local meta.json records the
//! S3 location only once both objects are verified in the bucket. A small HTTP proxy in
//! front of the real S3 server injects the faults.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgbak::meta::Meta;

use crate::support::bucket::{backup_dir, files, pgbak_s3};
use crate::support::{output_text, pg16, run, s3};

/// What the proxy does to requests.
#[derive(Clone, Copy)]
enum Fault {
    /// Answer the first N HEAD requests with 503.
    FailHeads(usize),
    /// Answer PUTs of `.meta.json` objects with 200 without storing them (a lying store).
    DropMetaPuts,
    /// Refuse ListMultipartUploads with 403 AccessDenied (a policy without
    /// `s3:ListBucketMultipartUploads`).
    DenyListUploads,
}

/// An HTTP proxy, one upstream connection per request (`Connection: close`).
struct FaultProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    heads_failed: Arc<AtomicUsize>,
}

impl FaultProxy {
    fn start(target: u16, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("binding the proxy");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let heads_failed = Arc::new(AtomicUsize::new(0));
        let (stop2, failed2) = (stop.clone(), heads_failed.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let failed = failed2.clone();
                        std::thread::spawn(move || {
                            let _ = serve(client, target, fault, &failed);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            port,
            stop,
            heads_failed,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serves the requests of one client connection, each over a fresh upstream connection.
fn serve(
    client: TcpStream,
    target: u16,
    fault: Fault,
    failed: &AtomicUsize,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut out = client;
    loop {
        // The request head.
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let end = line == "\r\n";
            head.push(line);
            if end {
                break;
            }
        }
        let request_line = head[0].clone();
        let length: usize = head
            .iter()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let method = request_line.split(' ').next().unwrap_or_default();
        let path = request_line.split(' ').nth(1).unwrap_or_default();
        match fault {
            Fault::FailHeads(n) if method == "HEAD" && failed.load(Ordering::SeqCst) < n => {
                failed.fetch_add(1, Ordering::SeqCst);
                out.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
                )?;
                continue;
            }
            Fault::DenyListUploads if method == "GET" && path.contains("?uploads") => {
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied\
                            </Code><Message>Access Denied</Message></Error>";
                out.write_all(
                    format!(
                        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n\
                         Content-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )?;
                continue;
            }
            Fault::DropMetaPuts if method == "PUT" && path.contains(".meta.json") => {
                out.write_all(
                    b"HTTP/1.1 200 OK\r\nETag: \"0\"\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
                )?;
                continue;
            }
            _ => {}
        }
        // Forward over a fresh connection that the server closes after its answer.
        let mut upstream = TcpStream::connect(("127.0.0.1", target))?;
        for line in &head {
            if line.to_ascii_lowercase().starts_with("connection:") {
                continue;
            }
            if line == "\r\n" {
                upstream.write_all(b"Connection: close\r\n")?;
            }
            upstream.write_all(line.as_bytes())?;
        }
        upstream.write_all(&body)?;
        let mut response = Vec::new();
        upstream.read_to_end(&mut response)?;
        let _ = upstream.shutdown(Shutdown::Both);
        // The client may keep its connection: say so instead of the server's close.
        let text = String::from_utf8_lossy(&response);
        let response = match text.find("\r\n\r\n") {
            Some(end) => {
                let head: Vec<&str> = text[..end]
                    .split("\r\n")
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .collect();
                let mut rebuilt = head.join("\r\n").into_bytes();
                rebuilt.extend_from_slice(b"\r\nConnection: keep-alive\r\n\r\n");
                rebuilt.extend_from_slice(&response[end + 4..]);
                rebuilt
            }
            None => response,
        };
        out.write_all(&response)?;
    }
}

#[test]
fn s3_a_transient_head_failure_after_the_upload_is_retried_not_deleted() {
    let pg = pg16();
    let db = pg.db_with(
        "s3 head retry",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1)",
    );
    let server = s3();
    let bucket = server.fresh_bucket("head-retry");
    let prefix = "retry/";
    // More 503s than one HEAD with the SDK's own three attempts survives.
    let proxy = FaultProxy::start(server.port, Fault::FailHeads(4));
    let dir = backup_dir("s3-head-retry");
    let out = run(pgbak_s3(&db, server, &bucket, prefix)
        .env("S3_ENDPOINT_URL", proxy.endpoint())
        .args(["backup", "--output-dir"])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(proxy.heads_failed.load(Ordering::SeqCst) >= 4);
    let objects = server.list_objects(&bucket, prefix);
    assert_eq!(objects.len(), 2, "dump and meta.json stay: {objects:?}");
    let metas = files(&dir, ".meta.json");
    let meta = Meta::read(&dir.join(&metas[0])).unwrap();
    assert!(meta.s3.is_some(), "the local meta.json records the upload");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_the_local_meta_json_records_the_upload_only_once_both_objects_are_there() {
    let pg = pg16();
    let db = pg.db_with(
        "s3 lying store",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1)",
    );
    let server = s3();
    let bucket = server.fresh_bucket("lying");
    let prefix = "lying/";
    let proxy = FaultProxy::start(server.port, Fault::DropMetaPuts);
    let dir = backup_dir("s3-lying");
    let out = run(pgbak_s3(&db, server, &bucket, prefix)
        .env("S3_ENDPOINT_URL", proxy.endpoint())
        .args(["backup", "--output-dir"])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let metas = files(&dir, ".meta.json");
    assert_eq!(metas.len(), 1, "the local backup is complete");
    let meta = Meta::read(&dir.join(&metas[0])).unwrap();
    assert_eq!(
        meta.s3, None,
        "no S3 location without a meta.json in the bucket"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_without_list_multipart_uploads_permission_the_cleanup_only_warns() {
    let pg = pg16();
    let db = pg.db_with(
        "s3 no list uploads",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1)",
    );
    let server = s3();
    let bucket = server.fresh_bucket("no-list-uploads");
    let proxy = FaultProxy::start(server.port, Fault::DenyListUploads);
    let dir = backup_dir("s3-no-list-uploads");
    let out = run(pgbak_s3(&db, server, &bucket, "p/")
        .env("S3_ENDPOINT_URL", proxy.endpoint())
        .args(["backup", "--output-dir"])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.contains("skipping the cleanup of stale multipart uploads"))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(
        warning.contains("WARN") && warning.contains("s3:ListBucketMultipartUploads"),
        "{warning}"
    );
    assert_eq!(
        server.list_objects(&bucket, "p/").len(),
        2,
        "dump and meta.json"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
