//! Real reverse proxies in front of a [`Registry`], on 127.0.0.1: nginx
//! (Debian's `nginx-light`) and Caddy (Debian's `caddy`), each writing its
//! own access log, for pull-log tests that read what a proxy saw.
//!
//! A test that needs one starts with [`require_proxy`], which skips (prints
//! `skipping: <reason>`, returns false) when the binary is missing, unless
//! `REGSWEEP_REQUIRE_REGISTRY=1`.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::oci::Layout;
use super::registry::Registry;
use super::skopeo::{Format, copy_with_digest, pull_reference};
use super::{is_executable, on_path};

/// nginx, from `nginx-light` (or any nginx package).
pub const NGINX_BIN: &str = "nginx";
/// Caddy 2, from `caddy`.
pub const CADDY_BIN: &str = "caddy";

/// How long a proxy may take to answer `GET /v2/` through to the registry.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a proxy may take to finish its requests and exit when asked.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// nginx's `combined` plus the digest the registry answered with (its
/// `Docker-Content-Digest`, `-` when none): what a proxy in front of a
/// registry logs so that a pull by tag names the manifest it served.
const NGINX_DIGEST_FORMAT: &str = r#"'$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $upstream_http_docker_content_digest'"#;

/// True when `bin` can be run (on `PATH`, or in the sbin directory Debian
/// installs nginx to, which a non-root `PATH` lacks). Otherwise prints
/// `skipping: <reason>` to stderr and returns false, or panics when
/// `REGSWEEP_REQUIRE_REGISTRY=1`.
#[must_use]
pub fn require_proxy(bin: &str) -> bool {
    if find(bin).is_some() {
        return true;
    }
    let package = if bin == NGINX_BIN { "nginx-light" } else { bin };
    let reason = format!("{bin} not found on PATH or in /usr/sbin");
    if env::var("REGSWEEP_REQUIRE_REGISTRY").as_deref() == Ok("1") {
        panic!("REGSWEEP_REQUIRE_REGISTRY=1 but {reason} (apt-get install {package})");
    }
    eprintln!("skipping: {reason}");
    false
}

fn find(bin: &str) -> Option<PathBuf> {
    if on_path(bin) {
        return Some(PathBuf::from(bin));
    }
    let sbin = Path::new("/usr/sbin").join(bin);
    is_executable(&sbin).then_some(sbin)
}

/// Which proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Caddy,
}

/// An access log a proxy writes.
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub path: PathBuf,
    /// The format regsweep should recognise its lines as.
    pub format: &'static str,
    /// Whether each line names the manifest digest the registry answered
    /// with.
    pub names_digest: bool,
}

/// A proxy process in front of one registry. Dropping it kills and reaps
/// the process; its directory (configuration, logs) goes with it.
pub struct Proxy {
    kind: Kind,
    dir: TempDir,
    bin: PathBuf,
    /// `127.0.0.1:<port>` of the registry.
    upstream: String,
    port: u16,
    child: Option<Child>,
}

impl Proxy {
    /// nginx in front of `reg`, logging every request twice: in nginx's
    /// default `combined` format and with the digest served appended.
    pub fn nginx(reg: &Registry) -> Proxy {
        Proxy::start(Kind::Nginx, reg)
    }

    /// Caddy in front of `reg`, logging every request as JSON.
    pub fn caddy(reg: &Registry) -> Proxy {
        Proxy::start(Kind::Caddy, reg)
    }

    fn start(kind: Kind, reg: &Registry) -> Proxy {
        let bin = match kind {
            Kind::Nginx => NGINX_BIN,
            Kind::Caddy => CADDY_BIN,
        };
        let mut proxy = Proxy {
            kind,
            dir: tempfile::tempdir().expect("proxy tempdir"),
            bin: find(bin).unwrap_or_else(|| panic!("{bin} not found")),
            upstream: reg.host(),
            port: 0,
            child: None,
        };
        proxy.launch();
        proxy
    }

    /// The access logs this proxy writes.
    pub fn access_logs(&self) -> Vec<AccessLog> {
        let log = |name: &str, format, names_digest| AccessLog {
            path: self.dir.path().join(name),
            format,
            names_digest,
        };
        match self.kind {
            Kind::Nginx => vec![
                log("combined.log", "combined", false),
                log("digest.log", "combined", true),
            ],
            Kind::Caddy => vec![log("access.json", "caddy-json", true)],
        }
    }

    /// `127.0.0.1:<port>` of the running proxy.
    pub fn host(&self) -> String {
        assert!(self.child.is_some(), "proxy is not running");
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }

    /// `docker://127.0.0.1:<port>/<repo_ref>`.
    pub fn docker_ref(&self, repo_ref: &str) -> String {
        format!("docker://{}/{repo_ref}", self.host())
    }

    /// What the proxy printed and its error log.
    pub fn log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        read("output.log") + &read("error.log")
    }

    /// Stops the proxy the way a service manager does (nginx: SIGQUIT,
    /// Caddy: SIGTERM), so that every request it answered is in its logs;
    /// kills it if it has not exited within [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let signal = match self.kind {
            Kind::Nginx => "-QUIT",
            Kind::Caddy => "-TERM",
        };
        let signalled = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if !signalled {
            // Both write a request's log line before the next is read.
            let _ = child.kill();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{:?} did not stop within {STOP_TIMEOUT:?}", self.kind);
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn write_config(&self) -> PathBuf {
        let dir = self.dir.path();
        match self.kind {
            Kind::Nginx => {
                let temp = dir.join("temp");
                fs::create_dir_all(&temp).unwrap();
                let temp = temp.display();
                // One process that SIGKILL ends whole (no orphaned
                // workers); every path it writes inside `dir`; request and
                // response bodies streamed (blob uploads are chunked), the
                // client's Host passed on for the registry's upload URLs.
                let config = format!(
                    "master_process off;\n\
                     pid {dir}/nginx.pid;\n\
                     error_log {dir}/error.log warn;\n\
                     events {{ worker_connections 256; }}\n\
                     http {{\n\
                     \x20 log_format digest {NGINX_DIGEST_FORMAT};\n\
                     \x20 access_log {dir}/combined.log combined;\n\
                     \x20 access_log {dir}/digest.log digest;\n\
                     \x20 client_body_temp_path {temp}/body;\n\
                     \x20 proxy_temp_path {temp}/proxy;\n\
                     \x20 fastcgi_temp_path {temp}/fastcgi;\n\
                     \x20 uwsgi_temp_path {temp}/uwsgi;\n\
                     \x20 scgi_temp_path {temp}/scgi;\n\
                     \x20 server {{\n\
                     \x20   listen 127.0.0.1:{port};\n\
                     \x20   client_max_body_size 0;\n\
                     \x20   chunked_transfer_encoding on;\n\
                     \x20   location / {{\n\
                     \x20     proxy_pass http://{upstream};\n\
                     \x20     proxy_http_version 1.1;\n\
                     \x20     proxy_request_buffering off;\n\
                     \x20     proxy_buffering off;\n\
                     \x20     proxy_read_timeout 120s;\n\
                     \x20     proxy_set_header Host $http_host;\n\
                     \x20     proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                     \x20     proxy_set_header X-Forwarded-Proto $scheme;\n\
                     \x20   }}\n\
                     \x20 }}\n\
                     }}\n",
                    dir = dir.display(),
                    port = self.port,
                    upstream = self.upstream,
                );
                let path = dir.join("nginx.conf");
                fs::write(&path, config).expect("write nginx.conf");
                path
            }
            Kind::Caddy => {
                // No admin endpoint (it would take a fixed port), no
                // certificates; Caddy passes the client's Host on itself.
                let config = format!(
                    "{{\n\
                     \tadmin off\n\
                     \tauto_https off\n\
                     }}\n\
                     \n\
                     http://127.0.0.1:{port} {{\n\
                     \treverse_proxy {upstream}\n\
                     \tlog {{\n\
                     \t\toutput file {dir}/access.json\n\
                     \t\tformat json\n\
                     \t}}\n\
                     }}\n",
                    dir = dir.display(),
                    port = self.port,
                    upstream = self.upstream,
                );
                let path = dir.join("Caddyfile");
                fs::write(&path, config).expect("write Caddyfile");
                path
            }
        }
    }

    fn command(&self, config: &Path) -> Command {
        let dir = self.dir.path();
        let mut cmd = Command::new(&self.bin);
        match self.kind {
            Kind::Nginx => {
                // `-e`: the error log before the configuration is read
                // (Debian's default is /var/log/nginx).
                cmd.arg("-p")
                    .arg(dir)
                    .arg("-c")
                    .arg(config)
                    .arg("-e")
                    .arg(dir.join("error.log"))
                    .args(["-g", "daemon off;"]);
            }
            Kind::Caddy => {
                // Caddy keeps its state (autosaved config, certificate
                // storage) under HOME and the XDG directories.
                let home = dir.join("home");
                cmd.args(["run", "--adapter", "caddyfile", "--config"])
                    .arg(config)
                    .env("HOME", &home)
                    .env("XDG_DATA_HOME", home.join("data"))
                    .env("XDG_CONFIG_HOME", home.join("config"));
            }
        }
        cmd
    }

    fn launch(&mut self) {
        // A free port found by binding port 0 can be taken by a parallel test
        // before the proxy binds it: retry on "address already in use".
        for _attempt in 0..5 {
            self.port = free_port();
            let config = self.write_config();
            let output = fs::File::create(self.dir.path().join("output.log")).unwrap();
            let child = self
                .command(&config)
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
            self.child = Some(child);
            match self.wait_ready() {
                Ok(()) => return,
                Err(log) if log.contains("address already in use") => {
                    self.kill();
                }
                Err(log) => {
                    self.kill();
                    panic!(
                        "{:?} on port {} in front of {} did not come up:\n{log}",
                        self.kind, self.port, self.upstream
                    );
                }
            }
        }
        panic!("{:?}: no free port after 5 attempts", self.kind);
    }

    /// Polls `GET /v2/` through the proxy until the registry's 200 comes
    /// back; on failure returns the proxy's log.
    fn wait_ready(&mut self) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}/v2/", self.port);
        let child = self.child.as_mut().expect("started");
        super::http::wait_until_up(child, &url, false, STARTUP_TIMEOUT)
            .map_err(|why| format!("{why}:\n{}", self.log()))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `skopeo copy` of `layout:tag` to `repo:dest_tag` through the proxy,
    /// as OCI with its digests kept. Returns the manifest digest pushed,
    /// which the registry itself must then name for `repo:dest_tag`.
    pub fn push(
        &self,
        reg: &Registry,
        layout: &Layout,
        tag: &str,
        repo: &str,
        dest_tag: &str,
    ) -> String {
        let dest = self.docker_ref(&format!("{repo}:{dest_tag}"));
        let digest = copy_with_digest(layout, tag, &dest, Format::Oci)
            .unwrap_or_else(|e| panic!("push through {:?} failed: {e}\n{}", self.kind, self.log()));
        assert_eq!(
            reg.tag_digest(repo, dest_tag),
            digest,
            "{repo}:{dest_tag} after the push through {:?}",
            self.kind
        );
        digest
    }

    /// `skopeo copy --all` of `repo_ref` through the proxy into a `dir:`
    /// copy, every file checked against its digest. Returns the digests
    /// pulled.
    pub fn pull(&self, repo_ref: &str) -> BTreeSet<String> {
        pull_reference(&self.docker_ref(repo_ref)).unwrap_or_else(|e| {
            panic!(
                "pull of {repo_ref} through {:?} failed: {e}\n{}",
                self.kind,
                self.log()
            )
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
