//! What an operator installs: the shell completions and the manual page the
//! binary generates, and the systemd units and Kubernetes CronJob in
//! `deploy/`, checked with the tools that read them (bash, groff,
//! systemd-analyze, a YAML parser, the real registry) and with the real
//! binary running the command lines they hold. A test whose tool is missing
//! prints `skipping: <reason>` and passes.

mod layout_support;
#[allow(unused_imports)]
mod registry_support;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use yaml_rust2::{Yaml, YamlLoader};

use layout_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_regsweep");
const SUBCOMMANDS: [&str; 5] = ["gc", "restore", "trash", "verify", "du"];

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn read(rel: &str) -> String {
    let path = deploy(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether `tool` runs; otherwise prints why the check is skipped.
fn have(tool: &str, why: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("skipping {why}: {tool} not found");
    }
    found
}

fn stdout_of(args: &[&str]) -> String {
    let out = regsweep(args);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

// ---------------------------------------------------------------------------
// Completions and manual page
// ---------------------------------------------------------------------------

#[test]
fn bash_completion_names_the_subcommands_and_flags_and_bash_loads_it() {
    let script = stdout_of(&["completions", "bash"]);
    for word in
        SUBCOMMANDS
            .iter()
            .copied()
            .chain(["--dry-run", "--metrics-file", "--delete-untagged"])
    {
        assert!(
            script.contains(word),
            "{word} missing from the bash completion"
        );
    }
    if !have("bash", "bash's checks of the completion") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("regsweep.bash");
    fs::write(&file, &script).unwrap();
    let out = run(Command::new("bash").arg("-n").arg(&file));
    assert!(out.status.success(), "bash -n: {}", describe(&out));
    // Loaded, it registers a completion for `regsweep`, and completing
    // `regsweep gc --dr` offers --dry-run.
    let probe = format!(
        "source {file}; complete -p regsweep >/dev/null || exit 3; \
         COMP_WORDS=(regsweep gc --dr); COMP_CWORD=2; COMP_LINE='regsweep gc --dr'; COMP_POINT=${{#COMP_LINE}}; \
         $(complete -p regsweep | sed -E 's/.*-F ([^ ]+).*/\\1/') regsweep --dr gc; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file = file.display()
    );
    let out = run(Command::new("bash").args(["-c", &probe]));
    assert!(out.status.success(), "{}", describe(&out));
    let offered = String::from_utf8_lossy(&out.stdout);
    assert!(
        offered.lines().any(|l| l == "--dry-run"),
        "completing `regsweep gc --dr` offers: {offered}"
    );
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    for shell in ["zsh", "fish"] {
        let script = stdout_of(&["completions", shell]);
        for word in SUBCOMMANDS.iter().chain(&["dry-run"]) {
            assert!(
                script.contains(word),
                "{word} missing from the {shell} completion"
            );
        }
        let check: &[&str] = match shell {
            "zsh" => &["-n"],
            _ => &["--no-execute"],
        };
        if have(shell, &format!("{shell}'s syntax check of its completion")) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join(format!("regsweep.{shell}"));
            fs::write(&file, &script).unwrap();
            let out = run(Command::new(shell).args(check).arg(&file));
            assert!(out.status.success(), "{shell}: {}", describe(&out));
        }
    }
    let out = regsweep(["completions", "tcsh"]);
    assert_eq!(
        code(&out),
        2,
        "an unknown shell is refused: {}",
        describe(&out)
    );
}

#[test]
fn man_page_is_roff_that_names_every_subcommand() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH regsweep 1"), "{page}");
    assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("regsweep\\-{sub}(1)")),
            "{sub} missing from the manual page"
        );
    }
    // One page per subcommand with --dir: gc's documents its flags.
    let dir = tempfile::tempdir().unwrap();
    let out = regsweep(["man".as_ref(), "--dir".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    for sub in SUBCOMMANDS {
        assert!(
            dir.path().join(format!("regsweep-{sub}.1")).is_file(),
            "{sub}"
        );
    }
    let gc = fs::read_to_string(dir.path().join("regsweep-gc.1")).unwrap();
    assert!(gc.contains("\\-\\-metrics\\-file"), "{gc}");
    let out = regsweep(["man", "--dir", "/nonexistent/regsweep-man"]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/regsweep-man"));

    if !have("groff", "rendering the manual page") {
        return;
    }
    for (name, text) in [
        ("regsweep.1", page.as_str()),
        ("regsweep-gc.1", gc.as_str()),
    ] {
        let file = dir.path().join(format!("render-{name}"));
        fs::write(&file, text).unwrap();
        // -ww: every warning; -z: no output, only the checks.
        let out = run(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&file));
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff warns on {name}: {}",
            describe(&out)
        );
        let out = run(Command::new("groff")
            .args(["-man", "-Tascii", "-P-c", "-P-b", "-P-u"])
            .arg(&file));
        let rendered = String::from_utf8_lossy(&out.stdout);
        assert!(rendered.contains("SYNOPSIS"), "{rendered}");
        if name == "regsweep.1" {
            assert!(rendered.contains("regsweep-gc(1)"), "{rendered}");
        } else {
            assert!(rendered.contains("--metrics-file"), "{rendered}");
        }
    }
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

const UNITS: [&str; 3] = [
    "regsweep-gc.service",
    "regsweep-gc.timer",
    "regsweep-registry-readonly.service",
];

/// Copies the units into a new directory, the installed binary's path
/// replaced by the one under test (verify checks that it exists).
fn units_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for unit in UNITS {
        let text = read(&format!("systemd/{unit}")).replace("/usr/local/bin/regsweep", BIN);
        fs::write(dir.path().join(unit), text).unwrap();
    }
    dir
}

/// `systemd-analyze verify` on `units` in `dir`: success and what it said
/// about files in `dir` (it may say things about the host's own units).
fn verify_units(dir: &Path, units: &[&str]) -> (bool, String) {
    let out = run(Command::new("systemd-analyze")
        .current_dir(dir)
        .args(["verify", "--man=no"])
        .args(units.iter().map(|u| dir.join(u))));
    let dir_text = dir.display().to_string();
    let said: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| {
            l.contains(&dir_text)
                || UNITS.iter().any(|u| l.contains(u))
                || l.contains("docker-registry")
        })
        .map(str::to_owned)
        .collect();
    (out.status.success(), said.join("\n"))
}

#[test]
fn systemd_units_pass_systemd_analyze_verify_and_a_broken_one_does_not() {
    if !have(
        "systemd-analyze",
        "systemd-analyze verify of deploy/systemd",
    ) {
        return;
    }
    let dir = units_copy();
    let (ok, said) = verify_units(dir.path(), &UNITS);
    assert!(ok && said.is_empty(), "verify: {said}");

    // The same check sees a bad value, and a unit that cannot start.
    let gc = dir.path().join("regsweep-gc.service");
    let good = fs::read_to_string(&gc).unwrap();
    fs::write(&gc, good.replace("Type=oneshot", "Type=oneshoot")).unwrap();
    let (_, said) = verify_units(dir.path(), &["regsweep-gc.service"]);
    assert!(
        said.contains("oneshoot"),
        "a bad Type= goes unnoticed: {said}"
    );
    fs::write(&gc, good.replace(BIN, "regsweep-not-installed-here")).unwrap();
    let (ok, said) = verify_units(dir.path(), &["regsweep-gc.service"]);
    assert!(!ok, "a missing binary goes unnoticed: {said}");

    // The drop-in the read-only unit installs, on a registry unit.
    let registry = tempfile::tempdir().unwrap();
    fs::write(
        registry.path().join("docker-registry.service"),
        "[Service]\nExecStart=/usr/bin/true\n",
    )
    .unwrap();
    let drop_in_dir = registry.path().join("docker-registry.service.d");
    fs::create_dir(&drop_in_dir).unwrap();
    let drop_in = read("systemd/registry-readonly.conf");
    let installed = drop_in_dir.join("50-regsweep-readonly.conf");
    fs::write(&installed, &drop_in).unwrap();
    let (ok, said) = verify_units(registry.path(), &["docker-registry.service"]);
    assert!(ok && said.is_empty(), "verify with the drop-in: {said}");
    fs::write(&installed, drop_in.replace("Environment=", "Enviroment=")).unwrap();
    let (_, said) = verify_units(registry.path(), &["docker-registry.service"]);
    assert!(
        said.contains("Enviroment"),
        "a bad drop-in goes unnoticed: {said}"
    );
}

#[test]
fn systemd_units_put_the_registry_read_only_around_the_sweep() {
    let gc = read("systemd/regsweep-gc.service");
    let readonly = read("systemd/regsweep-registry-readonly.service");
    assert!(gc.contains("\nRequires=regsweep-registry-readonly.service\n"));
    assert!(gc.contains("\nAfter=regsweep-registry-readonly.service\n"));
    assert!(gc.contains("\nType=oneshot\n"));
    // The drop-in goes before the restart, and comes out on every stop.
    assert!(readonly.contains("\nStopWhenUnneeded=yes\n"));
    let starts = directives(&readonly, "ExecStart");
    assert!(
        starts[0].contains("/etc/regsweep/registry-readonly.conf"),
        "{starts:?}"
    );
    assert!(
        starts
            .last()
            .unwrap()
            .ends_with("restart docker-registry.service")
    );
    let stops = directives(&readonly, "ExecStopPost");
    assert!(stops[0].starts_with("/usr/bin/rm -f /run/systemd/system/docker-registry.service.d/"));
    assert!(
        stops
            .last()
            .unwrap()
            .ends_with("restart docker-registry.service")
    );
    assert!(
        directives(&readonly, "ExecStop").is_empty(),
        "ExecStop= skips a failed start"
    );
    let timer = read("systemd/regsweep-gc.timer");
    assert!(timer.contains("\nPersistent=true\n") && timer.contains("\nOnCalendar="));
    // The unit and the drop-in set one and the same override.
    let drop_in = read("systemd/registry-readonly.conf");
    assert_eq!(environment(&drop_in), environment(&gc));
    assert_eq!(
        environment(&drop_in),
        [(
            "REGISTRY_STORAGE_MAINTENANCE_READONLY".to_owned(),
            "{enabled: true}".to_owned()
        )]
    );
}

/// The values of `key=` lines.
fn directives(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// `Environment="NAME=value"` lines, as systemd unquotes them.
fn environment(unit: &str) -> Vec<(String, String)> {
    directives(unit, "Environment")
        .iter()
        .map(|v| {
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            let (name, value) = v.split_once('=').expect("NAME=value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------

fn cronjob() -> (Vec<Yaml>, Yaml) {
    let docs = YamlLoader::load_from_str(&read("kubernetes/regsweep-cronjob.yaml"))
        .expect("the CronJob file is YAML");
    let cronjob = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("CronJob"))
        .expect("a CronJob document")
        .clone();
    (docs, cronjob)
}

fn the_script(cronjob: &Yaml) -> String {
    let container = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let command = container["command"].as_vec().expect("command");
    assert_eq!(command[0].as_str(), Some("/bin/bash"));
    command[2].as_str().expect("the script").to_owned()
}

#[test]
fn cronjob_has_what_a_cronjob_needs() {
    let (docs, cj) = cronjob();
    assert_eq!(cj["apiVersion"].as_str(), Some("batch/v1"));
    let spec = &cj["spec"];
    let schedule = spec["schedule"].as_str().expect("schedule");
    assert_eq!(schedule.split_whitespace().count(), 5, "{schedule}");
    assert_eq!(spec["concurrencyPolicy"].as_str(), Some("Forbid"));
    let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));
    let account = pod["serviceAccountName"]
        .as_str()
        .expect("a service account");
    let container = &pod["containers"][0];
    let mounts = container["volumeMounts"].as_vec().expect("volumeMounts");
    let data = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == Some("/var/lib/registry"))
        .expect("the registry's volume is mounted");
    let volume = pod["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| v["name"] == data["name"])
        .expect("the mounted volume is declared");
    assert_eq!(
        volume["persistentVolumeClaim"]["claimName"].as_str(),
        Some("registry-data")
    );
    for mount in mounts {
        assert!(
            pod["volumes"]
                .as_vec()
                .unwrap()
                .iter()
                .any(|v| v["name"] == mount["name"]),
            "{mount:?}"
        );
    }
    let script = the_script(&cj);
    assert!(script.contains("regsweep gc"), "{script}");
    // Read-only before the sweep, writable again from the EXIT trap.
    let on = script
        .find("'REGISTRY_STORAGE_MAINTENANCE_READONLY={enabled: true}'")
        .expect("the read-only switch");
    assert!(on < script.find("regsweep gc").unwrap());
    assert!(script.contains("trap writable EXIT"));
    assert!(script.contains("REGISTRY_STORAGE_MAINTENANCE_READONLY- "));
    // The account may change the registry's Deployment and is bound.
    let role = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Role"))
        .unwrap();
    let verbs: Vec<&str> = role["rules"][0]["verbs"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        verbs.contains(&"patch") && verbs.contains(&"watch"),
        "{verbs:?}"
    );
    let binding = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("RoleBinding"))
        .unwrap();
    assert_eq!(binding["subjects"][0]["name"].as_str(), Some(account));
    if have("bash", "bash -n of the CronJob's script") {
        let out = run(Command::new("bash").args(["-n", "-c", &script]));
        assert!(out.status.success(), "{}", describe(&out));
    }
}

// ---------------------------------------------------------------------------
// The command lines, run by the real binary
// ---------------------------------------------------------------------------

/// The arguments after `regsweep` on the line of `text` that runs `gc`.
fn gc_command_line(text: &str) -> Vec<String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.starts_with('#') && l.contains("/regsweep gc "))
        .expect("a regsweep gc command line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| w.ends_with("/regsweep")).unwrap();
    words[at + 1..]
        .iter()
        .filter(|w| **w != "&")
        .map(|w| (*w).to_owned())
        .collect()
}

/// Runs `args` with its storage, config and metrics paths moved into a
/// tempdir; returns the run and the metrics file.
fn run_deployed(args: &[String], env: &[(String, String)]) -> (Output, String) {
    let mut b = LayoutBuilder::new();
    let img = b.simple_image("img", &[]);
    b.push("app", "v1", &img);
    b.orphan_blob("orphan");
    let scratch = tempfile::tempdir().unwrap();
    let metrics = scratch.path().join("regsweep.prom");
    let config = scratch.path().join("config.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            b.root().display()
        ),
    )
    .unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| match a.as_str() {
            "/var/lib/registry" | "/var/lib/docker-registry" => b.root().display().to_string(),
            "/etc/docker/registry/config.yml" => config.display().to_string(),
            a if a.ends_with(".prom") => metrics.display().to_string(),
            a => {
                assert!(!a.starts_with('/'), "a path this test does not move: {a}");
                a.to_owned()
            }
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = regsweep_env(&args, &env);
    let text = fs::read_to_string(&metrics).unwrap_or_default();
    (out, text)
}

#[test]
fn deployed_command_lines_run_with_the_real_binary() {
    // systemd: the unit's own environment, and config.yml as TARGET.
    let gc = read("systemd/regsweep-gc.service");
    let args = gc_command_line(&gc);
    assert!(args.contains(&"--metrics-file".to_owned()), "{args:?}");
    assert!(args.contains(&"--json".to_owned()), "{args:?}");
    let (out, metrics) = run_deployed(&args, &environment(&gc));
    assert_eq!(code(&out), 0, "{args:?}: {}", describe(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints one report");
    assert_eq!(report["dry_run"], false);
    assert!(
        metrics.contains("regsweep_last_run_exit_code{"),
        "{metrics}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("storage.maintenance.readonly.enabled is true"),
        "regsweep reads the unit's override as read-only: {stderr}"
    );

    // Kubernetes: the storage directory as TARGET.
    let (_, cj) = cronjob();
    let args = gc_command_line(&the_script(&cj));
    assert!(args.contains(&"--metrics-file".to_owned()), "{args:?}");
    let (out, metrics) = run_deployed(&args, &[]);
    assert_eq!(code(&out), 0, "{args:?}: {}", describe(&out));
    assert!(metrics.contains("regsweep_last_run_success{"), "{metrics}");
}

// ---------------------------------------------------------------------------
// The read-only switch, on the real registry
// ---------------------------------------------------------------------------

/// Starts docker-registry on `root` with `env` and returns the status of
/// the first step of a push (`POST /v2/<name>/blobs/uploads/`).
fn upload_status(root: &Path, env: &[(String, String)]) -> u16 {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let config = dir.path().join("config.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n\
             http: {{addr: 127.0.0.1:{port}}}\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n",
            root.display()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("registry.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(registry_support::REGISTRY_BIN);
    cmd.arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (name, _) in std::env::vars() {
        if name.starts_with("REGISTRY_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().unwrap();
    let agent = registry_support::http::agent(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            panic!(
                "the registry exited ({exit}) with {env:?}:\n{}",
                fs::read_to_string(&log_path).unwrap()
            );
        }
        let up = agent
            .get(format!("http://127.0.0.1:{port}/v2/"))
            .call()
            .is_ok_and(|r| r.status() == 200);
        if up {
            break agent
                .post(format!("http://127.0.0.1:{port}/v2/probe/blobs/uploads/"))
                .send_empty()
                .unwrap()
                .status()
                .as_u16();
        }
        assert!(Instant::now() < deadline, "the registry did not come up");
        sleep(Duration::from_millis(25));
    };
    let _ = child.kill();
    let _ = child.wait();
    status
}

#[test]
fn readonly_overrides_in_deploy_make_the_real_registry_refuse_pushes() {
    if !registry_support::require_tools() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    assert_eq!(upload_status(root.path(), &[]), 202, "writable without it");
    let drop_in = environment(&read("systemd/registry-readonly.conf"));
    assert_eq!(upload_status(root.path(), &drop_in), 405, "{drop_in:?}");
    // The CronJob sets the same value with kubectl.
    let script = the_script(&cronjob().1);
    let value = script
        .split("'REGISTRY_STORAGE_MAINTENANCE_READONLY=")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the CronJob's value");
    let env = [(
        "REGISTRY_STORAGE_MAINTENANCE_READONLY".to_owned(),
        value.to_owned(),
    )];
    assert_eq!(upload_status(root.path(), &env), 405, "{env:?}");
}
