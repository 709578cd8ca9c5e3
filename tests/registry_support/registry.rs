//! A real `docker-registry serve` on 127.0.0.1, one per test.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::REGISTRY_BIN;
use super::s3::S3Storage;

/// How long a registry may take to answer `GET /v2/`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A registry process (or, after [`Registry::stop`], just its configuration)
/// over a filesystem storage root. Dropping it kills and reaps the process.
pub struct Registry {
    /// Holds `config.yml`, `registry.log` and, for [`Registry::start`], the
    /// storage under `data/`.
    dir: TempDir,
    root: PathBuf,
    port: u16,
    child: Option<Child>,
    /// `log.formatter` (`text`, `json`) of a registry that logs every
    /// request: its app log (stderr) goes to `app.log`, its access log
    /// (stdout) to `access.log`. `None`: errors only, into `registry.log`.
    formatter: Option<&'static str>,
    /// An endpoint the registry POSTs its notification events to.
    notify: Option<String>,
    /// Storage in a bucket (the `s3` driver) instead of under `root`.
    s3: Option<S3Storage>,
}

impl Registry {
    /// A running registry over a new, empty storage root.
    pub fn start() -> Registry {
        Registry::start_with(None, None)
    }

    /// [`Registry::start`], POSTing its notification events to `url`.
    pub fn start_notifying(url: &str) -> Registry {
        Registry::start_with(None, Some(url.to_owned()))
    }

    /// [`Registry::start`], logging at level info with `formatter` (`text`
    /// or `json`) and its access log on: see [`Registry::app_log`] and
    /// [`Registry::access_log`].
    pub fn start_logging(formatter: &'static str) -> Registry {
        Registry::start_with(Some(formatter), None)
    }

    fn start_with(formatter: Option<&'static str>, notify: Option<String>) -> Registry {
        let dir = tempfile::tempdir().expect("registry tempdir");
        let root = dir.path().join("data");
        fs::create_dir(&root).unwrap();
        let mut reg = Registry {
            dir,
            root,
            port: 0,
            child: None,
            formatter,
            notify,
            s3: None,
        };
        reg.launch();
        reg
    }

    /// A running registry keeping its storage in a bucket (the `s3`
    /// driver), which may already hold a tree.
    pub fn start_s3(storage: S3Storage) -> Registry {
        let mut reg = Registry::stopped_s3(storage);
        reg.launch();
        reg
    }

    /// The configuration of a registry over `storage`, with no process
    /// running: what `garbage-collect` and `regsweep gc CONFIG` need.
    pub fn stopped_s3(storage: S3Storage) -> Registry {
        let dir = tempfile::tempdir().expect("registry tempdir");
        let root = dir.path().join("no-filesystem-storage");
        let reg = Registry {
            dir,
            root,
            port: 0,
            child: None,
            formatter: None,
            notify: None,
            s3: Some(storage),
        };
        reg.write_config();
        reg
    }

    /// The bucket storage of a [`Registry::start_s3`] registry.
    pub fn s3(&self) -> Option<&S3Storage> {
        self.s3.as_ref()
    }

    /// The app log (stderr) of a [`Registry::start_logging`] registry.
    pub fn app_log(&self) -> PathBuf {
        self.dir.path().join("app.log")
    }

    /// The access log (stdout) of a [`Registry::start_logging`] registry.
    pub fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// A running registry over an existing storage root (for example a copy
    /// of another registry's tree).
    pub fn start_on(root: &Path) -> Registry {
        let mut reg = Registry::stopped_on(root);
        reg.launch();
        reg
    }

    /// A configuration for `root` with no process running: what
    /// `garbage-collect` and `regsweep gc CONFIG` need.
    pub fn stopped_on(root: &Path) -> Registry {
        let reg = Registry {
            dir: tempfile::tempdir().expect("registry tempdir"),
            root: root.to_path_buf(),
            port: 0,
            child: None,
            formatter: None,
            notify: None,
            s3: None,
        };
        reg.write_config();
        reg
    }

    /// The storage root (the directory holding `docker/registry/v2`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The registry's `config.yml`.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// `127.0.0.1:<port>` of the running registry.
    pub fn host(&self) -> String {
        assert!(self.child.is_some(), "registry is not running");
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }

    /// `docker://127.0.0.1:<port>/<repo_ref>`, the skopeo name of `repo:tag`
    /// or `repo@digest`.
    pub fn docker_ref(&self, repo_ref: &str) -> String {
        format!("docker://{}/{repo_ref}", self.host())
    }

    /// Stops the process (kill, then wait). The storage stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the registry if it runs and starts it again on the same storage
    /// (possibly on another port).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        if self.formatter.is_some() {
            let read = |path: PathBuf| fs::read_to_string(path).unwrap_or_default();
            return read(self.app_log()) + &read(self.access_log());
        }
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Quiet logs; deletion and schema1 enabled; foreign layers with http(s)
    /// URLs accepted (2.8 rejects them unless an allow list is configured).
    fn write_config(&self) {
        let log = match self.formatter {
            None => "log:\n  level: error\n  accesslog:\n    disabled: true\n".to_owned(),
            Some(formatter) => format!(
                "log:\n  level: info\n  formatter: {formatter}\n  accesslog:\n    disabled: false\n"
            ),
        };
        let notifications = match &self.notify {
            None => String::new(),
            Some(url) => format!(
                "notifications:\n  endpoints:\n    - name: test\n      url: {url}\n      timeout: 5s\n      threshold: 5\n      backoff: 200ms\n"
            ),
        };
        let driver = match &self.s3 {
            None => format!(
                "  filesystem:\n    rootdirectory: {}\n",
                self.root.display()
            ),
            Some(s3) => s3.config_lines(),
        };
        let config = format!(
            "version: 0.1\n\
             {log}\
             {notifications}\
             storage:\n{driver}  delete:\n    enabled: true\n  \
             cache:\n    blobdescriptor: inmemory\n\
             http:\n  addr: 127.0.0.1:{port}\n\
             compatibility:\n  schema1:\n    enabled: true\n\
             validation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n",
            port = self.port,
        );
        fs::write(self.config(), config).expect("write registry config");
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "registry already running");
        // A free port found by binding port 0 can be taken by a parallel test
        // before the registry binds it: retry on "address already in use".
        for _attempt in 0..5 {
            self.port = free_port();
            self.write_config();
            let (stdout, stderr) = match self.formatter {
                None => {
                    let log = fs::File::create(self.dir.path().join("registry.log")).unwrap();
                    (log.try_clone().unwrap(), log)
                }
                Some(_) => (
                    fs::File::create(self.access_log()).unwrap(),
                    fs::File::create(self.app_log()).unwrap(),
                ),
            };
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(self.config())
                // 2.8's s3 driver fails at start when this names a CA bundle.
                .env_remove("AWS_CA_BUNDLE")
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {REGISTRY_BIN}: {e}"));
            self.child = Some(child);
            match self.wait_ready() {
                Ok(()) => return,
                Err(log) if log.contains("address already in use") => self.stop(),
                Err(log) => {
                    self.stop();
                    let storage = match &self.s3 {
                        None => self.root.display().to_string(),
                        Some(s3) => format!("{} at {}", s3.url(), s3.endpoint),
                    };
                    panic!(
                        "docker-registry on port {} with storage {storage} did not come up:\n{log}",
                        self.port,
                    );
                }
            }
        }
        panic!("docker-registry: no free port after 5 attempts");
    }

    /// Polls `GET /v2/` until it answers 200; on failure returns the log.
    fn wait_ready(&mut self) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}/v2/", self.port);
        let child = self.child.as_mut().expect("started");
        super::http::wait_until_up(child, &url, false, STARTUP_TIMEOUT)
            .map_err(|why| format!("registry: {why}:\n{}", self.log()))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
