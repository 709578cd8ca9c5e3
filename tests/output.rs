//! What people read: the `gc` summary (its table and its closing sentence
//! count the same things), the per-repository table, `-v`, the wording of
//! real runs and of the plan shown before asking, the retention policy's
//! rule names, and the `trash` and `restore` commands. Runs the real binary
//! on trees written by `tests/layout_support`; the questions asked on a
//! terminal are answered through a pseudo-terminal.

mod layout_support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use layout_support::*;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `regsweep gc ARGS ROOT` (with `--min-age 0`), which must exit 0: its
/// stdout.
fn gc_text(root: &Path, args: &[&str]) -> String {
    let mut all = vec!["gc"];
    all.extend_from_slice(args);
    all.push(s(root));
    let out = regsweep(&all);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    stdout(&out)
}

/// The rows of the summary table: label → (before, after, third column),
/// and the third column's heading.
fn table(text: &str) -> (String, BTreeMap<String, [String; 3]>) {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("before"));
    let heading = lines.next().unwrap_or_else(|| panic!("no table:\n{text}"));
    let third = heading
        .split_whitespace()
        .skip(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mut rows = BTreeMap::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        // Cells are separated by two spaces or more; a value holds one at most.
        let cells: Vec<&str> = line
            .trim()
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if cells.len() == 4 {
            rows.insert(
                cells[0].to_owned(),
                [cells[1].into(), cells[2].into(), cells[3].into()],
            );
        }
    }
    (third, rows)
}

/// `1,234` → 1234.
fn number(text: &str) -> u64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {text:?}"))
}

/// The count before `noun` (or its plural) in `sentence`, 0 if absent.
fn count_of(sentence: &str, singular: &str, plural: &str) -> u64 {
    let words: Vec<&str> = sentence
        .split([' ', ','])
        .filter(|w| !w.is_empty())
        .collect();
    for noun in [plural, singular] {
        let noun: Vec<&str> = noun.split(' ').collect();
        for i in 1..words.len() {
            let rest = &words[i..];
            if rest.len() >= noun.len()
                && rest[..noun.len()]
                    .iter()
                    .zip(&noun)
                    .all(|(w, n)| w.trim_end_matches(['.', ')']) == *n)
            {
                if let Ok(n) = words[i - 1].replace(',', "").parse() {
                    return n;
                }
            }
        }
    }
    0
}

/// The line starting with `prefix`.
fn line_starting<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}:\n{text}"))
}

/// Every row's third column is what before and after differ by, and the
/// closing sentence counts the same manifests, layer links, blobs and tags.
fn assert_table_agrees_with_sentence(text: &str, sentence: &str) {
    let (_, rows) = table(text);
    for (label, [before, after, delta]) in &rows {
        if label == "blob bytes" {
            continue;
        }
        assert_eq!(
            number(before) - number(after),
            number(delta),
            "row {label}:\n{text}"
        );
    }
    for (row, one, many) in [
        ("manifests", "manifest", "manifests"),
        ("layer links", "layer link", "layer links"),
        ("blobs", "blob", "blobs"),
        ("tags", "tag", "tags"),
    ] {
        assert_eq!(
            number(&rows[row][2]),
            count_of(sentence, one, many),
            "{row}: the table and the sentence disagree:\n{text}"
        );
    }
}

/// An image in `app`; an older `app` manifest deleted through the API (its
/// revision directory left empty); a repository `gone` whose only manifest
/// was deleted through the API, linking the layer `app` shares.
fn api_deleted_tree() -> LayoutBuilder {
    let mut b = LayoutBuilder::new();
    let base = b.layer("base");
    let app = b.simple_image("app", &[&base]);
    b.push("app", "v1", &app);
    let old = b.simple_image("old", &[]);
    b.push("app", "old", &old);
    b.api_delete("app", &old.digest);
    let gone = b.simple_image("gone", &[&base]);
    b.push("gone", "v1", &gone);
    b.api_delete("gone", &gone.digest);
    b
}

#[test]
fn summary_table_and_closing_sentence_count_the_same_with_api_deleted_manifests() {
    let b = api_deleted_tree();
    let text = gc_text(b.root(), &["--dry-run", "--remove-empty-repos"]);
    let (third, rows) = table(&text);
    assert_eq!(third, "reclaimable");
    assert_eq!(
        rows["manifests"],
        ["3", "1", "2"].map(String::from),
        "emptied revision directories count before they go:\n{text}"
    );
    assert_eq!(rows["repositories"], ["2", "1", "1"].map(String::from));
    let sentence = line_starting(&text, "Dry run: nothing deleted.");
    assert_table_agrees_with_sentence(&text, sentence);
    assert_eq!(
        count_of(sentence, "layer link", "layer links"),
        5,
        "the dead config and layer links of app's old image and of gone's, and gone's live link to the shared layer, which goes with the repository: {sentence}"
    );

    // The sweep itself, and then nothing is left to count.
    let text = gc_text(b.root(), &["-y", "--remove-empty-repos"]);
    let (third, rows) = table(&text);
    assert_eq!(third, "deleted");
    assert_eq!(rows["manifests"], ["3", "1", "2"].map(String::from));
    assert_table_agrees_with_sentence(&text, line_starting(&text, "Deleted 2 manifests"));
    let again = gc_json(b.root(), &["--dry-run"]);
    assert_eq!(again["before"]["manifests"], 1, "{again:#}");
}

#[test]
fn real_runs_say_deleted_or_moved_and_dry_runs_say_reclaimable() {
    let mut b = LayoutBuilder::new();
    b.orphan_linked_blob("app", "x");
    let root = b.root().to_path_buf();
    let trash = b.scratch().join("trash");
    let dry = gc_text(&root, &["--dry-run"]);
    assert!(dry.contains("(dry run; untagged manifests kept)"), "{dry}");
    assert!(dry.contains("Reclaimable by repository (largest first):"));

    let moved = gc_text(&root, &["-y", "--trash", s(&trash)]);
    assert!(
        moved.contains("Moved to the trash by repository (largest first):"),
        "{moved}"
    );
    assert_eq!(table(&moved).0, "moved");
    assert!(!moved.contains("dry run") && !moved.contains("Reclaimable"));
    assert_table_agrees_with_sentence(&moved, line_starting(&moved, "Moved to the trash: "));

    let out = regsweep(["restore", s(&trash)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let deleted = gc_text(&root, &["-y"]);
    assert!(
        deleted.contains("Deleted by repository (largest first):"),
        "{deleted}"
    );
    assert!(!deleted.contains("Reclaimable") && !deleted.contains("dry run"));
    assert_eq!(table(&deleted).0, "deleted");
}

#[test]
fn the_per_repository_table_has_layer_links_thousands_separators_and_keeps_its_columns() {
    let mut b = LayoutBuilder::new();
    let long = format!("team/{}/service", "a-very-long-path-component".repeat(4));
    for repo in ["bulk", long.as_str(), "app"] {
        let image = b.simple_image(repo, &[]);
        b.push(repo, "v1", &image);
    }
    for i in 0..1000 {
        b.orphan_linked_blob("bulk", &i.to_string());
    }
    b.orphan_linked_blob(&long, "long");
    b.orphan_linked_blob("app", "app");
    let text = gc_text(b.root(), &["--dry-run"]);

    let (_, rows) = table(&text);
    assert_eq!(rows["layer links"][2], "1,002", "{text}");
    let start = text
        .lines()
        .position(|l| l.starts_with("Reclaimable by repository"))
        .unwrap_or_else(|| panic!("{text}"));
    let lines: Vec<&str> = text.lines().skip(start + 1).take(4).collect();
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        ["repository", "manifests", "layer links", "blobs", "bytes"],
        "{text}"
    );
    let width = lines[0].chars().count();
    for line in &lines {
        assert_eq!(
            line.chars().count(),
            width,
            "columns keep their place:\n{text}"
        );
    }
    let bulk = lines
        .iter()
        .find(|l| l.trim_start().starts_with("bulk"))
        .unwrap();
    let cells: Vec<&str> = bulk.split_whitespace().collect();
    assert_eq!(cells[..4], ["bulk", "0", "1,000", "1,000"], "{text}");
    let shortened = lines
        .iter()
        .find(|l| l.contains('…'))
        .unwrap_or_else(|| panic!("the long name is shortened in the middle:\n{text}"));
    assert!(
        shortened.trim_start().starts_with(&long[..20]),
        "{shortened}"
    );
    assert!(
        shortened
            .split_whitespace()
            .next()
            .unwrap()
            .ends_with("/service"),
        "{shortened}"
    );
    // JSON has the whole name.
    let report = gc_json(b.root(), &["--dry-run"]);
    assert!(
        report["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == long.as_str())
    );
}

#[test]
fn verbose_listing_starts_with_a_header_line() {
    let mut b = LayoutBuilder::new();
    b.orphan_linked_blob("app", "x");
    let text = gc_text(b.root(), &["--dry-run", "-v"]);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("kind\trepository\ttag\tdigest_or_path\tbytes\treason")
    );
    let listed: Vec<&str> = lines.take_while(|l| l.contains('\t')).collect();
    assert_eq!(listed.len(), 2, "a layer link and its blob: {text}");
    assert!(listed.iter().all(|l| l.split('\t').count() == 6), "{text}");
}

#[test]
fn policy_reports_name_the_rule_that_decided() {
    let mut b = LayoutBuilder::new();
    for i in 0..3 {
        let tag = format!("1.{i}-SNAPSHOT");
        let image = b.simple_image(&tag, &[]);
        b.push("team/svc", &tag, &image);
        let pushed =
            std::time::SystemTime::now() - std::time::Duration::from_secs(86_400 * (10 - i));
        fs::File::open(tag_current_link(b.root(), "team/svc", &tag))
            .unwrap()
            .set_modified(pushed)
            .unwrap();
    }
    let image = b.simple_image("stable", &[]);
    b.push("team/svc", "stable", &image);
    let policy = b.scratch().join("policy.json");
    fs::write(
        &policy,
        r#"{"rules": [
            {"name": "stable builds", "tags": "stable", "keep": true},
            {"name": "snapshots", "tags": ".*-SNAPSHOT", "keep_last": 1},
            {"keep_last": 10}
        ]}"#,
    )
    .unwrap();
    let text = gc_text(b.root(), &["--dry-run", "--policy", s(&policy)]);
    let row = |tag: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(tag))
            .unwrap_or_else(|| panic!("no row for {tag}:\n{text}"))
            .to_owned()
    };
    assert!(row("1.0-SNAPSHOT").trim_start().starts_with("delete"));
    assert!(
        row("1.0-SNAPSHOT").contains("rules[1] (snapshots): beyond the 1 most recently pushed"),
        "{text}"
    );
    assert!(
        row("1.2-SNAPSHOT").contains("rules[1] (snapshots): among"),
        "{text}"
    );
    assert!(
        row("stable").contains("rules[0] (stable builds): kept by its rule"),
        "{text}"
    );
    assert!(
        text.contains("Retention policy (")
            && text.contains("would delete 2 tags (")
            && text.contains(") and keep 2."),
        "{text}"
    );
    // The JSON keeps the bare id.
    let report = gc_json(b.root(), &["--dry-run", "--policy", s(&policy)]);
    let deleted = &report["policy"]["repositories"][0]["deleted"][0];
    assert_eq!(deleted["rule"], "rules[1]", "{report:#}");
}

// ---------------------------------------------------------------------------
// Asked on a terminal
// ---------------------------------------------------------------------------

/// Runs regsweep with stdin and stderr on a pseudo-terminal (stdout piped),
/// typing `answer`: (exit code, stdout, what the terminal showed).
fn on_terminal(args: &[&OsStr], answer: &str) -> (i32, String, String) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(args)
        .stdin(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(slave);
    let mut master = fs::File::from(master);
    let mut reader = master.try_clone().unwrap();
    let shown = std::thread::spawn(move || {
        let mut shown = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the last process holding the terminal exits.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            shown.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&shown).into_owned()
    });
    master.write_all(answer.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = shown.join().unwrap();
    (out.status.code().unwrap(), stdout(&out), shown)
}

fn os(args: &[&str]) -> Vec<&'static OsStr> {
    args.iter()
        .map(|a| OsStr::new(Box::leak(a.to_string().into_boxed_str())))
        .collect()
}

#[test]
fn the_plan_shown_before_asking_is_not_called_a_dry_run() {
    let mut b = LayoutBuilder::new();
    let orphan = b.orphan_linked_blob("app", "x");
    let root = b.root().to_path_buf();
    let (status, out, shown) = on_terminal(&os(&["gc", "--min-age", "0", s(&root)]), "n\n");
    assert_eq!(status, 0, "{shown}");
    assert!(out.is_empty(), "declined: no report on stdout: {out}");
    assert!(
        shown.contains("(about to delete; untagged manifests kept)"),
        "{shown}"
    );
    assert!(shown.contains("About to delete "), "{shown}");
    assert!(shown.contains("To delete by repository"), "{shown}");
    assert!(
        !shown.contains("dry run") && !shown.contains("Dry run"),
        "{shown}"
    );
    assert!(shown.contains("Delete these now? [y/N]"), "{shown}");
    assert!(b.has_blob(&orphan.digest), "declined: nothing deleted");

    let trash = b.scratch().join("trash");
    let (status, _, shown) = on_terminal(
        &os(&["gc", "--min-age", "0", "--trash", s(&trash), s(&root)]),
        "n\n",
    );
    assert_eq!(status, 0, "{shown}");
    assert!(
        shown.contains("About to move ") && shown.contains(" to the trash."),
        "{shown}"
    );
    assert!(!shown.contains("dry run"), "{shown}");
}

// ---------------------------------------------------------------------------
// trash list, trash empty, restore
// ---------------------------------------------------------------------------

/// A storage with garbage swept into `trash`: the batch's name.
fn swept_batch(b: &mut LayoutBuilder, trash: &Path) -> String {
    b.orphan_linked_blob("app", &format!("garbage {}", trash.display()));
    let report = gc_json(b.root(), &["-y", "--trash", s(trash)]);
    report["trash"]["batch"].as_str().unwrap().to_owned()
}

/// Files and bytes below `dir`.
fn size_of_tree(dir: &Path) -> (u64, u64) {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| !e.file_type().is_dir())
        .fold((0, 0), |(n, bytes), e| {
            (n + 1, bytes + e.metadata().unwrap().len())
        })
}

#[test]
fn trash_list_shows_each_batch_size_and_has_json() {
    let mut b = LayoutBuilder::new();
    let trash = b.scratch().join("trash");
    let first = swept_batch(&mut b, &trash);
    let (files, bytes) = size_of_tree(&trash.join(&first));

    let out = regsweep(["trash", "list", "--json", s(&trash)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let listing: Value = serde_json::from_slice(&out.stdout).unwrap();
    let batch = &listing["batches"][0];
    assert_eq!(batch["batch"], first.as_str());
    assert_eq!(batch["files"], files);
    assert_eq!(batch["bytes"], bytes);
    assert_eq!(batch["moves"], 2, "a layer link and a blob: {listing:#}");
    assert_eq!(listing["bytes"], bytes);

    let out = regsweep(["trash", "list", s(&trash)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["batch", "started", "moves", "size", "storage", "root"]
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with(&first), "{text}");
    let human = format!("{bytes} B");
    assert!(row.contains(&human) || row.contains("KiB"), "{text}");
    assert!(text.contains("1 batch, "), "{text}");

    let empty = b.scratch().join("empty-trash");
    fs::create_dir(&empty).unwrap();
    let out = regsweep(["trash", "list", s(&empty)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(
        stdout(&out).starts_with("No batches in "),
        "{}",
        describe(&out)
    );
}

#[test]
fn trash_empty_dry_run_lists_what_it_would_delete_and_deletes_nothing() {
    let mut b = LayoutBuilder::new();
    let trash = b.scratch().join("trash");
    let batch = swept_batch(&mut b, &trash);
    let (files, bytes) = size_of_tree(&trash.join(&batch));
    let out = regsweep(["trash", "empty", "--dry-run", s(&trash)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("would delete {}", trash.join(&batch).display())),
        "{text}"
    );
    assert!(text.contains("Dry run: nothing deleted."), "{text}");
    assert!(trash.join(&batch).exists(), "a dry run deletes nothing");

    let out = regsweep(["trash", "empty", "--dry-run", "--json", s(&trash)]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["deleted"][0], batch.as_str());
    assert_eq!(
        (report["files"].as_u64(), report["bytes"].as_u64()),
        (Some(files), Some(bytes))
    );
    assert!(trash.join(&batch).exists());

    // What a real run then deletes is what the dry run said.
    let out = regsweep(["trash", "empty", "--json", s(&trash)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["dry_run"], false);
    assert_eq!(
        (&done["files"], &done["bytes"]),
        (&report["files"], &report["bytes"])
    );
    assert!(!trash.join(&batch).exists());
}

#[test]
fn trash_empty_asks_on_a_terminal_unless_yes() {
    let mut b = LayoutBuilder::new();
    let trash = b.scratch().join("trash");
    let batch = swept_batch(&mut b, &trash);
    let (status, out, shown) = on_terminal(&os(&["trash", "empty", s(&trash)]), "n\n");
    assert_eq!(status, 0, "{shown}");
    assert!(
        shown.contains(&batch) && shown.contains("for good"),
        "{shown}"
    );
    assert!(
        shown.contains("Delete these batches for good? [y/N]"),
        "{shown}"
    );
    assert!(shown.contains("Nothing deleted."), "{shown}");
    assert!(out.is_empty(), "{out}");
    assert!(trash.join(&batch).exists(), "declined");

    let (status, out, shown) = on_terminal(&os(&["trash", "empty", s(&trash)]), "y\n");
    assert_eq!(status, 0, "{shown}");
    assert!(out.contains("Deleted 1 batch: "), "{out}");
    assert!(!trash.join(&batch).exists(), "confirmed");

    let batch = swept_batch(&mut b, &trash);
    let (status, out, shown) = on_terminal(&os(&["trash", "empty", "-y", s(&trash)]), "");
    assert_eq!(status, 0, "{shown}");
    assert!(!shown.contains("[y/N]"), "-y does not ask: {shown}");
    assert!(out.contains("Deleted 1 batch: "), "{out}");
    assert!(!trash.join(&batch).exists());
}

#[test]
fn restore_from_a_directory_without_batches_is_an_error_naming_it() {
    let b = LayoutBuilder::new();
    let trash: PathBuf = b.scratch().join("not-a-trash");
    fs::create_dir(&trash).unwrap();
    let out = regsweep(["restore", s(&trash)]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}: no batches to restore", trash.display())),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", describe(&out));
}

#[test]
fn restore_says_what_came_back_in_words_that_count() {
    let mut b = LayoutBuilder::new();
    let trash = b.scratch().join("trash");
    let batch = swept_batch(&mut b, &trash);
    let out = regsweep(["restore", s(&trash)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("Restored 2 paths and ")
            && text.contains(&format!("from 1 batch ({batch})")),
        "{text}"
    );
    // Done once: a second restore finds nothing and says so.
    let out = regsweep(["restore", s(&trash)]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
}
