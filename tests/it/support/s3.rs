//! A real S3 API server for the tests: moto_server on 127.0.0.1, in memory, with the multipart
//! part minimum lowered to 64 KiB so small dumps exercise multipart uploads. The helpers that
//! inspect what pgbak uploaded use aws-sdk-s3 (path style, static test credentials).

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::StorageClass;

use super::{free_port, paths, scratch_dir, spawn_reaper};

/// Multipart part minimum the test server enforces (moto's S3_UPLOAD_PART_MIN_SIZE).
pub const PART_MIN_SIZE: usize = 65536;

/// A running moto_server.
#[derive(Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub port: u16,
    log: PathBuf,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    pub key: String,
    pub size: u64,
    /// As the server reports it (`STANDARD`, `STANDARD_IA`, ...).
    pub storage_class: Option<String>,
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    pub key: String,
    pub upload_id: String,
}

/// A moto_server of its own, for a test that kills it (Drop kills it too).
#[derive(Debug)]
pub struct OwnedS3 {
    server: S3Server,
    child: Mutex<Option<Child>>,
    reaper: Mutex<Option<Child>>,
}

impl Deref for OwnedS3 {
    type Target = S3Server;
    fn deref(&self) -> &S3Server {
        &self.server
    }
}

impl OwnedS3 {
    /// Kills the server now (SIGKILL): later requests get connection refused.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnedS3 {
    fn drop(&mut self) {
        self.kill();
        if let Some(log_dir) = self.server.log.parent() {
            let _ = std::fs::remove_dir_all(log_dir);
        }
        super::stop_reaper(&self.reaper);
    }
}

/// The shared S3 server of this test process. Tests share it: use [`S3Server::fresh_bucket`].
pub fn s3() -> &'static S3Server {
    static S3: OnceLock<S3Server> = OnceLock::new();
    shared(&S3)
}

/// The server in `cell`, started on first use; it lives until the test process exits.
fn shared(cell: &'static OnceLock<S3Server>) -> &'static S3Server {
    cell.get_or_init(|| {
        let (server, child, reaper) = start_moto();
        // Both live until the test process exits; the reaper then kills moto.
        std::mem::forget(child);
        std::mem::forget(reaper);
        server
    })
}

/// A second shared S3 server on its own port, for tests with two buckets on
/// two stores (issue 27's destinations). Tests share it: use [`S3Server::fresh_bucket`].
pub fn second_s3() -> &'static S3Server {
    static SECOND: OnceLock<S3Server> = OnceLock::new();
    shared(&SECOND)
}

/// A dedicated S3 server that the test may kill.
pub fn private_s3() -> OwnedS3 {
    let (server, child, reaper) = start_moto();
    OwnedS3 {
        server,
        child: Mutex::new(Some(child)),
        reaper: Mutex::new(Some(reaper)),
    }
}

/// `$1` = moto's pid, `$2` = its log dir.
const MOTO_CLEANUP: &str =
    r#"kill "$1" 2>/dev/null; sleep 1; kill -KILL "$1" 2>/dev/null; rm -rf "$2""#;

fn start_moto() -> (S3Server, Child, Child) {
    let moto = &paths().moto;
    let mut last_err = String::new();
    for _ in 0..3 {
        let dir = scratch_dir("s3");
        let log = dir.join("moto.log");
        let port = free_port();
        let log_file = std::fs::File::create(&log).expect("creating moto log");
        let mut child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("S3_UPLOAD_PART_MIN_SIZE", PART_MIN_SIZE.to_string())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log fd"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}; run scripts/setup.sh", moto.display()));
        let reaper = spawn_reaper(
            MOTO_CLEANUP,
            &[
                std::ffi::OsStr::new(&child.id().to_string()),
                dir.as_os_str(),
            ],
        );
        let server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if server.answers_http() {
                return (server, child, reaper);
            }
            if let Ok(Some(status)) = child.try_wait() {
                last_err = format!(
                    "moto_server exited with {status}:\n{}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                );
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                last_err = format!(
                    "moto_server did not answer on port {port} within 60 s:\n{}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut reaper = reaper;
        let _ = reaper.kill();
        let _ = reaper.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
    panic!("starting the S3 test server failed 3 times; last: {last_err}");
}

/// One tokio runtime for the S3 helpers, driven from a plain thread so that the helpers work
/// from sync tests and from inside `#[tokio::test]` alike.
pub fn block_on<F: Future + Send>(fut: F) -> F::Output
where
    F::Output: Send,
{
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("building the S3 helpers' tokio runtime")
    });
    std::thread::scope(|s| {
        s.spawn(|| rt.block_on(fut))
            .join()
            .expect("S3 helper thread panicked")
    })
}

impl S3Server {
    fn answers_http(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if stream
            .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
    }

    /// moto's output, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Environment for pgbak (or any AWS client) to use this server: endpoint, static
    /// credentials, region. The bucket (`S3_BUCKET`) is the test's to set.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("S3_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// An aws-sdk-s3 client for this server (path style, credentials test/test, us-east-1).
    pub fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new("test", "test", None, None, "pgbak-tests"))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub fn create_bucket(&self, name: &str) {
        let client = self.client();
        block_on(async { client.create_bucket().bucket(name).send().await }).unwrap_or_else(|e| {
            panic!(
                "creating bucket {name}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
    }

    /// Creates a bucket with a name unique in this test process and returns the name.
    pub fn fresh_bucket(&self, hint: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let clean = super::names::slug(hint, '-');
        let name = format!(
            "t-{}-{}",
            clean.trim_matches('-'),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.create_bucket(&name);
        name
    }

    /// All objects under `prefix` (empty = all), sorted by key.
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> Vec<S3Object> {
        let client = self.client();
        let result: Result<Vec<S3Object>, _> = block_on(async {
            let mut objects = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await?;
                for o in page.contents() {
                    objects.push(S3Object {
                        key: o.key().unwrap_or_default().to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        storage_class: o.storage_class().map(|c| c.as_str().to_string()),
                    });
                }
                match page.next_continuation_token() {
                    Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            objects.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(objects)
        });
        result.unwrap_or_else(|e: aws_sdk_s3::error::SdkError<_>| {
            panic!(
                "listing s3://{bucket}/{prefix}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        })
    }

    /// The bytes of one object.
    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.try_get_object(bucket, key)
            .unwrap_or_else(|e| panic!("getting s3://{bucket}/{key}: {e}"))
    }

    /// The bytes of one object, or the error text (e.g. NoSuchKey).
    pub fn try_get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        let client = self.client();
        block_on(async {
            let out = client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
            let body = out.body.collect().await.map_err(|e| e.to_string())?;
            Ok(body.into_bytes().to_vec())
        })
    }

    /// Uploads `bytes` as one object (e.g. a dump for `pgbak restore s3://...`).
    /// Flips one bit of the byte in the middle of an object (rot, or a tampered copy): its
    /// size stays, its sha256 no longer matches its meta.json.
    pub fn flip_byte(&self, bucket: &str, key: &str) {
        let mut bytes = self.get_object(bucket, key);
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        self.put_object(bucket, key, bytes, None);
    }

    pub fn put_object(&self, bucket: &str, key: &str, bytes: Vec<u8>, storage_class: Option<&str>) {
        let client = self.client();
        block_on(async {
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(bytes))
                .set_storage_class(storage_class.map(StorageClass::from))
                .send()
                .await
        })
        .unwrap_or_else(|e| {
            panic!(
                "putting s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
    }

    /// Multipart uploads of `bucket` still in progress (an interrupted upload must leave none).
    pub fn multipart_uploads(&self, bucket: &str) -> Vec<MultipartUpload> {
        let client = self.client();
        let out = block_on(async { client.list_multipart_uploads().bucket(bucket).send().await })
            .unwrap_or_else(|e| {
                panic!(
                    "listing multipart uploads of {bucket}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        out.uploads()
            .iter()
            .map(|u| MultipartUpload {
                key: u.key().unwrap_or_default().to_string(),
                upload_id: u.upload_id().unwrap_or_default().to_string(),
            })
            .collect()
    }
}
