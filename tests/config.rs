//! TARGET as the registry's `config.yml`, read as the registry reads it
//! (gopkg.in/yaml.v2: anchors, aliases, merge keys, its alias bound): the
//! real binary on small storage trees, and the real registry on the same
//! configs to show it reads them the same.

mod layout_support;
#[allow(unused_imports)]
mod registry_support;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use layout_support::*;
use registry_support::{REGISTRY_BIN, require_tools};

/// Environment variables of a run.
type Env<'a> = Vec<(&'a str, &'a str)>;

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.yml");
    fs::write(&path, text).unwrap();
    path
}

fn canon(path: &Path) -> String {
    fs::canonicalize(path).unwrap().display().to_string()
}

#[test]
fn merge_key_rootdirectory_is_the_root_swept() {
    let mut b = LayoutBuilder::new();
    let img = b.simple_image("img", &[]);
    b.push("app", "v1", &img);
    let orphan = b.orphan_blob("o");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "version: 0.1\nfs: &fs\n  rootdirectory: {}\nstorage:\n  filesystem:\n    <<: *fs\n  delete:\n    enabled: true\n",
            b.root().display()
        ),
    );
    let (dry, out) = gc_json_env(&cfg, &["--dry-run"], &[]);
    assert_eq!(dry["exit_code"], 0, "{}", describe(&out));
    assert_eq!(dry["storage_root"], canon(b.root()));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("/var/lib/registry"),
        "{}",
        describe(&out)
    );
    assert_blob_kept(b.root(), &orphan.digest);

    let report = gc_json(&cfg, &["-y"]);
    assert_eq!(report["exit_code"], 0, "{report}");
    assert_eq!(report["storage_root"], canon(b.root()));
    assert_blob_gone(b.root(), &orphan.digest);
    assert_manifest_intact(b.root(), "app", &img);
}

#[test]
fn alias_bomb_config_exits_2_quickly() {
    let b = LayoutBuilder::new();
    let mut text =
        String::from("version: 0.1\nlol:\n  a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(",");
        text.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    text.push_str(&format!(
        "storage:\n  filesystem:\n    rootdirectory: {}\n    lol: *a8\n",
        b.root().display()
    ));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &text);
    let started = Instant::now();
    let out = regsweep(["gc", "--dry-run", cfg.to_str().unwrap()]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("excessive aliasing") && stderr.contains(cfg.to_str().unwrap()),
        "{}",
        describe(&out)
    );
}

#[test]
fn relative_rootdirectory_is_refused_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: data\n",
    );
    let out = regsweep(["gc", "--dry-run", cfg.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("storage.filesystem.rootdirectory"),
        "{}",
        describe(&out)
    );
}

/// What the real registry did with a config: where it began an upload
/// (`None` if it refused the upload: read-only), or its log if it did not
/// start.
fn registry_upload_root(config: &Path, env: &[(&str, &str)]) -> Result<Option<u16>, String> {
    let text = fs::read_to_string(config).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let served = config.with_file_name("served.yml");
    fs::write(&served, text.replace("ADDR", &format!("127.0.0.1:{port}"))).unwrap();
    let log_path = config.with_file_name("registry.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(REGISTRY_BIN);
    cmd.arg("serve")
        .arg(&served)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (name, _) in std::env::vars() {
        if name.starts_with("REGISTRY_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().unwrap();
    let agent = registry_support::http::agent(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(20);
    let result = loop {
        if child.try_wait().unwrap().is_some() {
            break Err(fs::read_to_string(&log_path).unwrap());
        }
        let up = agent
            .get(format!("http://127.0.0.1:{port}/v2/"))
            .call()
            .is_ok_and(|r| r.status() == 200);
        if up {
            let status = agent
                .post(format!("http://127.0.0.1:{port}/v2/probe/blobs/uploads/"))
                .send_empty()
                .unwrap()
                .status()
                .as_u16();
            break Ok(Some(status));
        }
        assert!(Instant::now() < deadline, "registry did not come up");
        sleep(Duration::from_millis(25));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Which of `roots` holds the upload the registry began.
fn root_with_upload<'a>(roots: &[&'a Path]) -> Option<&'a Path> {
    let found: Vec<&Path> = roots
        .iter()
        .copied()
        .filter(|r| v2(r).join("repositories/probe/_uploads").is_dir())
        .collect();
    assert!(found.len() <= 1, "uploads in several roots: {found:?}");
    found.first().copied()
}

/// For configs using anchors, merge keys and environment overrides, the
/// real registry keeps its data where regsweep reads the storage root.
#[test]
fn registry_and_regsweep_agree_on_the_root() {
    if !require_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let head = format!(
        "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nhttp: {{addr: ADDR}}\nroots:\n  a: &a {{rootdirectory: {}}}\n  b: &b {{rootdirectory: {}}}\n",
        a.display(),
        b.display()
    );
    let b_root = b.display().to_string();
    let env_b = format!("{{filesystem: {{rootdirectory: {b_root}}}}}");
    let cases: Vec<(&str, String, Env, &Path)> = vec![
        (
            "merge",
            "storage:\n  filesystem:\n    <<: *a\n".into(),
            vec![],
            &a,
        ),
        (
            "sequence merge: the earlier map wins",
            "storage:\n  filesystem:\n    <<: [*b, *a]\n".into(),
            vec![],
            &b,
        ),
        (
            "a merge after a key wins over it",
            format!("storage:\n  filesystem:\n    rootdirectory: {b_root}\n    <<: *a\n"),
            vec![],
            &a,
        ),
        (
            "a key after a merge wins over it",
            format!("storage:\n  filesystem:\n    <<: *a\n    rootdirectory: {b_root}\n"),
            vec![],
            &b,
        ),
        (
            "merge of the storage section",
            "fs: &fs\n  filesystem: *b\nstorage:\n  <<: *fs\n  delete: {enabled: true}\n".into(),
            vec![],
            &b,
        ),
        (
            "environment after REGISTRY_STORAGE",
            "storage:\n  filesystem: *a\n".into(),
            vec![
                ("REGISTRY_STORAGE", "filesystem"),
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &b_root),
            ],
            &b,
        ),
        (
            "REGISTRY_STORAGE as YAML",
            "storage:\n  filesystem: *a\n".into(),
            vec![("REGISTRY_STORAGE", &env_b)],
            &b,
        ),
    ];
    for (what, storage, env, expected) in cases {
        for root in [&a, &b] {
            let _ = fs::remove_dir_all(root);
            fs::create_dir_all(v2(root)).unwrap();
        }
        let cfg = write_config(dir.path(), &format!("{head}{storage}"));
        let status = registry_upload_root(&cfg, &env).unwrap_or_else(|log| panic!("{what}: {log}"));
        assert_eq!(status, Some(202), "{what}");
        assert_eq!(
            root_with_upload(&[&a, &b]),
            Some(expected),
            "{what}: registry"
        );
        let (report, out) = gc_json_env(&cfg, &["--dry-run"], &env);
        assert_eq!(
            report["storage_root"],
            canon(expected),
            "{what}: regsweep\n{}",
            describe(&out)
        );
    }
}

/// The registry refuses an alias bomb in what it decodes and fails to start
/// on an unreadable read-only setting; regsweep refuses both, and reads
/// read-only mode where the registry refuses uploads.
#[test]
fn registry_and_regsweep_agree_on_refusals_and_readonly() {
    if !require_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(v2(&root)).unwrap();
    let head = format!(
        "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nhttp: {{addr: ADDR}}\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
        root.display()
    );
    let mut bomb = String::from("lol:\n  a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(",");
        bomb.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    // (config tail, environment, read-only as the registry runs it, or
    // None when it does not start)
    let cases: Vec<(String, Env, Option<bool>)> = vec![
        (
            "  maintenance: {readonly: {enabled: yes}}\n".into(),
            vec![],
            Some(true),
        ),
        (
            "  maintenance: {readonly: {enabled: off}}\n".into(),
            vec![],
            Some(false),
        ),
        (
            "  maintenance: {readonly: {enabled: 'true'}}\n".into(),
            vec![],
            None,
        ),
        (
            "".into(),
            vec![("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{enabled: true}")],
            Some(true),
        ),
        (
            "  maintenance: {readonly: {enabled: false}}\n".into(),
            vec![("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")],
            Some(false),
        ),
        (
            "".into(),
            vec![("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")],
            None,
        ),
        ("    lol: *a8\n".into(), vec![], None),
    ];
    for (tail, env, readonly) in cases {
        let text = match tail.contains("*a8") {
            true => format!("{bomb}{head}{tail}"),
            false => format!("{head}{tail}"),
        };
        let cfg = write_config(dir.path(), &text);
        let registry = registry_upload_root(&cfg, &env);
        let ours = regsweep::storage::target::read_config(
            &cfg,
            &regsweep::storage::target::Environment::from_vars(env.iter().copied()),
        );
        match readonly {
            Some(readonly) => {
                let status = registry.unwrap_or_else(|log| panic!("{tail} {env:?}: {log}"));
                assert_eq!(
                    status,
                    Some(if readonly { 405 } else { 202 }),
                    "{tail} {env:?}"
                );
                assert_eq!(ours.unwrap().readonly, readonly, "{tail} {env:?}");
            }
            None => {
                let log = registry.expect_err(&format!("the registry started: {tail} {env:?}"));
                let ours = match ours {
                    Err(e @ regsweep::Error::Config { .. }) => e.to_string(),
                    other => panic!("{tail} {env:?}: {other:?}"),
                };
                if tail.contains("*a8") {
                    assert!(log.contains("excessive aliasing"), "{log}");
                    assert!(ours.contains("excessive aliasing"), "{ours}");
                }
            }
        }
    }
}
