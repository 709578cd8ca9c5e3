//! Deterministic synthetic registry log (a `harness = false` bench target), for
//! timing `regsweep gc --pull-log` on a log of a given size.
//!
//! ```text
//! cargo bench --bench pull-log-synth -- --out big.log --json-out big-json.log --size-mb 1024
//! ```
//!
//! Writes lines in the exact shape of docker-registry 2.8.2's text formatter (the
//! field set and order of `src/retention/pulls/testdata/registry-2.8.2-text.log`), timestamps
//! ascending over `--days` days up to `--end`: a mix of manifest HEADs and GETs by
//! tag and by digest (the pulls), blob GETs, `/v2/` probes, and a few 404s. The
//! repositories and tags are those `benches/synth.rs` writes for the same `--repos`
//! and `--tags` (`team-<t>/app-<k>`, `latest`, `1.1`, ...), so a policy on a synth
//! tree finds its tags pulled. Distinct (repository, reference) pairs are bounded:
//! `repos * tags * (1 + digests-per-tag)`, whatever the size. `--json-out` writes
//! the same lines wrapped as Docker's json-file driver does.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
pull-log-synth: deterministic registry 2.8.2 text log

usage: cargo bench --bench pull-log-synth -- --out FILE [options]

  --out FILE           the log to write
  --json-out FILE      also write it wrapped in Docker json-file records
  --size-mb M          stop after M MiB of plain log          [1024]
  --repos N            repositories (as benches/synth.rs names them) [200]
  --tags T             tags per repository                     [5]
  --digests D          distinct digests pulled per tag         [4]
  --days D             days the timestamps span                [40]
  --end EPOCH          the last line's time, Unix seconds      [now]
  --seed S             PRNG seed                               [1]
  -h, --help           this text
";

struct Options {
    out: String,
    json_out: Option<String>,
    size: u64,
    repos: u64,
    tags: u64,
    digests: u64,
    days: u64,
    end: u64,
    seed: u64,
}

fn parse_args() -> Result<Option<Options>, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut o = Options {
        out: String::new(),
        json_out: None,
        size: 1024 << 20,
        repos: 200,
        tags: 5,
        digests: 4,
        days: 40,
        end: now,
        seed: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    let num = |flag: &str, v: Option<&String>| -> Result<u64, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag}: not a whole number: {v}"))
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            // cargo passes `--bench` to harness = false targets under `cargo bench`.
            "--bench" => {}
            "-h" | "--help" => return Ok(None),
            "--out" => o.out = it.next().ok_or("--out needs a value")?.clone(),
            "--json-out" => o.json_out = Some(it.next().ok_or("--json-out needs a value")?.clone()),
            "--size-mb" => o.size = num(flag, it.next())? << 20,
            "--repos" => o.repos = num(flag, it.next())?,
            "--tags" => o.tags = num(flag, it.next())?,
            "--digests" => o.digests = num(flag, it.next())?,
            "--days" => o.days = num(flag, it.next())?,
            "--end" => o.end = num(flag, it.next())?,
            "--seed" => o.seed = num(flag, it.next())?,
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    if o.out.is_empty() {
        return Err("--out is required".into());
    }
    if o.repos == 0 || o.tags == 0 || o.digests == 0 || o.days == 0 || o.size == 0 {
        return Err("--size-mb, --repos, --tags, --digests and --days must be positive".into());
    }
    Ok(Some(o))
}

/// splitmix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn repo_name(i: u64) -> String {
    let team = i / 20;
    let k = i % 20;
    if k % 7 == 6 {
        format!("team-{team}/app-{}/sub", k - 1)
    } else {
        format!("team-{team}/app-{k}")
    }
}

fn tag_name(t: u64) -> String {
    if t == 0 {
        "latest".to_string()
    } else {
        format!("1.{t}")
    }
}

/// A sha256-shaped digest derived from `key` (not the digest of anything).
fn digest_of(key: u64) -> String {
    let mut r = Rng(key);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for _ in 0..4 {
        s.push_str(&format!("{:016x}", r.next()));
    }
    s
}

fn uuid(r: &mut Rng) -> String {
    let a = r.next();
    let b = r.next();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48 & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// `time="..."` as logrus writes it: RFC 3339 with nanoseconds, trailing zeros cut.
fn rfc3339_nanos(secs: u64, nanos: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut frac = format!("{nanos:09}");
    while frac.ends_with('0') {
        frac.pop();
    }
    let dot = if frac.is_empty() { "" } else { "." };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{dot}{frac}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

const AGENTS: &[&str] = &[
    "containerd/1.7.13",
    "containerd/1.6.28",
    "\"docker/27.3.1 go/go1.22.7 git-commit/41ca978 kernel/6.8.0-45-generic os/linux arch/amd64 UpstreamClient(Docker-Client/27.3.1 \\\\(linux\\\\))\"",
    "skopeo/1.9.3",
    "\"cri-o/1.30.4 go/go1.22.5 os/linux arch/amd64\"",
];

const MT_OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_JSON: &str = "\"application/json; charset=utf-8\"";

/// Values logrus leaves unquoted: letters, digits and `-._/@^+`.
fn quoted(v: &str) -> String {
    if v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._/@^+".contains(&b))
    {
        v.to_string()
    } else {
        format!("\"{v}\"")
    }
}

/// A user agent, quoted as logrus writes it when it has spaces.
fn agent(r: &mut Rng) -> &'static str {
    AGENTS[r.below(AGENTS.len() as u64) as usize]
}

/// Go's json encoding of a string, as moby's json-file driver writes it.
fn json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '<' | '>' | '&' => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

fn run(o: Options) -> io::Result<(u64, u64)> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&o.out)?);
    let mut json = match &o.json_out {
        Some(p) => Some(BufWriter::with_capacity(1 << 20, File::create(p)?)),
        None => None,
    };
    let mut r = Rng(o.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5851_F42D_4C95_7F2D);
    let span = o.days * 86400;
    let start = o.end - span;
    let mut written = 0u64;
    let mut lines = 0u64;
    let mut record = Vec::with_capacity(4096);
    let mut last_ns = 0u64;
    while written < o.size {
        // Time advances with the bytes written: ascending, spanning the whole window.
        let t_ns = ((written as u128 * span as u128 * 1_000_000_000) / o.size as u128) as u64;
        let t_ns = t_ns.max(last_ns + 1 + r.below(1000));
        last_ns = t_ns;
        let (secs, nanos) = (start + t_ns / 1_000_000_000, t_ns % 1_000_000_000);
        let time = rfc3339_nanos(secs, nanos);
        let repo = r.below(o.repos);
        let name = repo_name(repo);
        let tag = r.below(o.tags);
        let id = uuid(&mut r);
        let port = 1024 + r.below(64000);
        let peer = format!(
            "\"10.{}.{}.{}:{port}\"",
            r.below(256),
            r.below(256),
            r.below(256)
        );
        let duration = format!("{}.{:06}ms", r.below(20), r.below(1_000_000));
        let ua = agent(&mut r);
        let mt = if repo % 2 == 0 { MT_OCI } else { MT_DOCKER };
        let common_head = format!(
            "go.version=go1.19.8 http.request.host=\"registry.example.com:5000\" http.request.id={id}"
        );
        let dice = r.below(100);
        let line = match dice {
            // Manifest HEAD (what docker and containerd resolve a tag with) and GET by tag.
            0..=49 => {
                let method = if dice < 35 { "HEAD" } else { "GET" };
                format!(
                    "time=\"{time}\" level=info msg=\"response completed\" {common_head} http.request.method={method} http.request.remoteaddr={peer} http.request.uri=/v2/{name}/manifests/{} http.request.useragent={ua} http.response.contenttype={mt} http.response.duration={duration} http.response.status=200 http.response.written={}",
                    tag_name(tag),
                    400 + r.below(2000)
                )
            }
            // Manifest GET by digest: the image a tag resolved to, or a pinned one.
            50..=59 => {
                let d =
                    digest_of(((repo * o.tags + tag) * o.digests + r.below(o.digests)) ^ o.seed);
                format!(
                    "time=\"{time}\" level=info msg=\"response completed\" {common_head} http.request.method=GET http.request.remoteaddr={peer} http.request.uri={} http.request.useragent={ua} http.response.contenttype={mt} http.response.duration={duration} http.response.status=200 http.response.written={}",
                    quoted(&format!("/v2/{name}/manifests/{d}")),
                    400 + r.below(2000)
                )
            }
            // Blob GETs: most of a real log, never a pull.
            60..=91 => {
                let d = digest_of(r.next());
                format!(
                    "time=\"{time}\" level=info msg=\"response completed\" {common_head} http.request.method=GET http.request.remoteaddr={peer} http.request.uri=\"/v2/{name}/blobs/{d}\" http.request.useragent={ua} http.response.contenttype=application/octet-stream http.response.duration={duration} http.response.status=200 http.response.written={}",
                    r.below(200_000_000)
                )
            }
            // The /v2/ probe every client starts with.
            92..=96 => format!(
                "time=\"{time}\" level=info msg=\"response completed\" {common_head} http.request.method=GET http.request.remoteaddr={peer} http.request.uri=/v2/ http.request.useragent={ua} http.response.contenttype={MT_JSON} http.response.duration={duration} http.response.status=200 http.response.written=2"
            ),
            // A tag that is not there.
            _ => format!(
                "time=\"{time}\" level=error msg=\"response completed with error\" err.code=\"manifest unknown\" err.detail=\"unknown tag=nope\" err.message=\"manifest unknown\" {common_head} http.request.method=GET http.request.remoteaddr={peer} http.request.uri=/v2/{name}/manifests/nope http.request.useragent={ua} http.response.contenttype={MT_JSON} http.response.duration={duration} http.response.status=404 http.response.written=94 vars.name={} vars.reference=nope",
                quoted(&name)
            ),
        };
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        written += line.len() as u64 + 1;
        lines += 1;
        if let Some(j) = json.as_mut() {
            record.clear();
            record.extend_from_slice(b"{\"log\":");
            json_string(&mut record, &line);
            record.pop();
            record.extend_from_slice(b"\\n\",\"stream\":\"stderr\",\"time\":\"");
            // The collector's time: a little after the line's own.
            record.extend_from_slice(
                rfc3339_nanos(secs, (nanos + 52_000) % 1_000_000_000).as_bytes(),
            );
            record.extend_from_slice(b"\"}\n");
            j.write_all(&record)?;
        }
    }
    out.flush()?;
    if let Some(j) = json.as_mut() {
        j.flush()?;
    }
    Ok((lines, written))
}

fn main() -> ExitCode {
    match parse_args() {
        Ok(None) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pull-log-synth: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Ok(Some(o)) => {
            let out = o.out.clone();
            match run(o) {
                Ok((lines, bytes)) => {
                    println!("lines={lines}\nbytes={bytes}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pull-log-synth: {out}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
