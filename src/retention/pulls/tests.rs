use std::io::Write;
use std::time::{Duration, SystemTime};

use super::parse::{Format, LineContext, Parsed, manifest_reference, parse_line, parse_line_in};
use super::*;

fn at(text: &str) -> SystemTime {
    crate::clock::parse_rfc3339(text).unwrap()
}

/// The request a line records, as `(format, method, uri, status, agent)`.
fn request(line: &str) -> (Format, String, String, u16, Option<String>) {
    match parse_line(line) {
        Parsed::Line {
            format,
            request: Some(r),
            ..
        } => (
            format,
            r.method.into_owned(),
            r.uri.into_owned(),
            r.status,
            r.user_agent.map(|ua| ua.into_owned()),
        ),
        other => panic!("no request in {line:?}: {other:?}"),
    }
}

fn time_of(line: &str) -> SystemTime {
    match parse_line(line) {
        Parsed::Line { time, .. } => time,
        other => panic!("no time in {line:?}: {other:?}"),
    }
}

// Lines of distribution 2.8.3 (cri-o/crio-credential-provider's README) and
// 2.7.1 (a containerd HEAD by tag), as published.
const CRIO_APP: &str = r#"time="2025-09-11T08:01:26.920579713Z" level=info msg="response completed" go.version=go1.20.8 http.request.host="localhost:5000" http.request.id=ace363e2-c0de-427b-a833-8a3d5ee5d360 http.request.method=GET http.request.remoteaddr="[2001:db8:4860::1]:33432" http.request.uri="/v2/library/nginx/manifests/latest" http.request.useragent="cri-o/1.34.0 go/go1.25.0 os/linux arch/amd64" http.response.contenttype="application/vnd.oci.image.manifest.v1+json" http.response.duration=2.773353ms http.response.status=200 http.response.written=1958"#;
const CRIO_AUTHORIZED: &str = r#"time="2025-09-11T08:01:26.920319786Z" level=info msg="authorized request" go.version=go1.20.8 http.request.host="localhost:5000" http.request.id=ace363e2-c0de-427b-a833-8a3d5ee5d360 http.request.method=GET http.request.remoteaddr="[2001:db8:4860::1]:33432" http.request.uri="/v2/library/nginx/manifests/latest" http.request.useragent="cri-o/1.34.0 go/go1.25.0 os/linux arch/amd64" vars.name="library/nginx" vars.reference=latest"#;
const CRIO_ACCESS: &str = r#"2001:db8:4860::1 - - [11/Sep/2025:08:01:26 +0000] "GET /v2/library/nginx/manifests/latest HTTP/1.1" 200 1958 "" "cri-o/1.34.0 go/go1.25.0 os/linux arch/amd64""#;
const CONTAINERD_ACCESS: &str = r#"172.18.0.2 - - [26/Jul/2020:14:52:43 +0000] "HEAD /v2/nicolaka/netshoot/manifests/latest HTTP/1.1" 200 1999 "" "containerd/v1.4.0-beta.1-34-g49b0743c""#;
const CONTAINERD_APP: &str = r#"time="2020-07-26T14:52:45.4204299Z" level=info msg="response completed" go.version=go1.11.2 http.request.host="proxy:5000" http.request.id=15e9ac86-7d79-4883-a8ce-861a7484887c http.request.method=HEAD http.request.remoteaddr="172.18.0.2:57588" http.request.uri="/v2/nicolaka/netshoot/manifests/latest" http.request.useragent="containerd/v1.4.0-beta.1-34-g49b0743c" http.response.contenttype="application/vnd.docker.distribution.manifest.v2+json" http.response.duration=1.6697112s http.response.status=200 http.response.written=1999"#;
// distribution issue #1842 (v2.4.1, JSON formatter; 2.8 writes the same shape).
const JSON_APP: &str = r#"{"go.version":"go1.6.2","http.request.host":"some-request-host","http.request.id":"000e2a4b-0000","http.request.method":"POST","http.request.remoteaddr":"192.168.1.200","http.request.uri":"/v2/project-2/repo-2/blobs/uploads/","http.request.useragent":"a user agent","http.response.duration":"40.123508ms","http.response.status":202,"http.response.written":0,"instance.id":"an-instance-id","level":"info","msg":"response completed","time":"2016-07-15T05:49:20.435122278Z","version":"v2.4.1"}"#;
// Docker's user agent, escaped by gorilla inside the quotes.
const DOCKER_ACCESS: &str = r#"10.10.130.253 - - [29/Oct/2024:12:25:17 +0000] "GET /v2/wishlistweb/manifests/latest HTTP/1.1" 200 6366 "" "docker/19.03.12 go/go1.13.10 git-commit/48a66213fe kernel/5.4.0 os/linux arch/amd64 UpstreamClient(Docker-Client/19.03.12 \\(linux\\))""#;

#[test]
fn published_app_log_lines_are_read_from_the_uri() {
    assert_eq!(
        request(CRIO_APP),
        (
            Format::AppText,
            "GET".into(),
            "/v2/library/nginx/manifests/latest".into(),
            200,
            Some("cri-o/1.34.0 go/go1.25.0 os/linux arch/amd64".into())
        )
    );
    assert_eq!(time_of(CRIO_APP), at("2025-09-11T08:01:26.920579713Z"));
    let (_, method, uri, status, ua) = request(CONTAINERD_APP);
    assert_eq!((method.as_str(), status), ("HEAD", 200));
    assert_eq!(uri, "/v2/nicolaka/netshoot/manifests/latest");
    assert_eq!(ua.as_deref(), Some("containerd/v1.4.0-beta.1-34-g49b0743c"));
    // "authorized request" comes before the answer: a time, not a pull.
    assert!(matches!(
        parse_line(CRIO_AUTHORIZED),
        Parsed::Line {
            format: Format::AppText,
            request: None,
            ..
        }
    ));
}

#[test]
fn published_access_lines_are_read_to_the_end_of_their_second() {
    let (format, method, uri, status, ua) = request(CONTAINERD_ACCESS);
    assert_eq!(format, Format::Combined);
    assert_eq!(
        (method.as_str(), uri.as_str(), status),
        ("HEAD", "/v2/nicolaka/netshoot/manifests/latest", 200)
    );
    assert_eq!(ua.as_deref(), Some("containerd/v1.4.0-beta.1-34-g49b0743c"));
    assert_eq!(
        time_of(CRIO_ACCESS),
        at("2025-09-11T08:01:26.999999999Z"),
        "one-second resolution: the end of the second"
    );
    let (_, _, _, _, ua) = request(DOCKER_ACCESS);
    assert!(
        ua.unwrap()
            .ends_with("UpstreamClient(Docker-Client/19.03.12 \\(linux\\))"),
        "escapes inside quotes are undone once"
    );
}

#[test]
fn json_formatter_lines_read_numbers_and_strings() {
    let (format, method, uri, status, ua) = request(JSON_APP);
    assert_eq!(format, Format::AppJson);
    assert_eq!((method.as_str(), status), ("POST", 202));
    assert_eq!(uri, "/v2/project-2/repo-2/blobs/uploads/");
    assert_eq!(ua.as_deref(), Some("a user agent"));
    match parse_line(JSON_APP) {
        Parsed::Line { instance, .. } => assert_eq!(instance.as_deref(), Some("an-instance-id")),
        other => panic!("{other:?}"),
    }
    let logstash = r#"{"@timestamp":"2024-05-01T10:00:00.5Z","@version":"1","http.request.method":"HEAD","http.request.uri":"/v2/a/manifests/v1","http.response.status":"200","level":"info","message":"response completed"}"#;
    let (_, method, _, status, ua) = request(logstash);
    assert_eq!((method.as_str(), status, ua), ("HEAD", 200, None));
}

#[test]
fn v3_text_lines_with_bare_values_and_escapes_are_read() {
    let v3 = r#"time="2026-01-10T10:00:00.123456789Z" level=info msg="response completed" environment=development go.version=go1.23.7 http.request.host="localhost:5000" http.request.id=0f7c http.request.method=GET http.request.remoteaddr="172.17.0.1:40312" http.request.uri=/v2/busybox/manifests/latest http.request.useragent="say \"hi\" \\ bye" http.response.contenttype=application/vnd.oci.image.index.v1+json http.response.duration=1.31ms http.response.status=200 http.response.written=9218 instance.id=5b69 service=registry vars.name=busybox vars.reference=latest version=3.1.0"#;
    let (_, _, uri, status, ua) = request(v3);
    assert_eq!(
        (uri.as_str(), status),
        ("/v2/busybox/manifests/latest", 200)
    );
    assert_eq!(ua.as_deref(), Some(r#"say "hi" \ bye"#));
    // 2.8 quotes verbatim: a quote inside a value ends it only before ` key=`.
    let raw = r#"time="2024-05-01T10:00:00Z" level=info msg="response completed" http.request.method=GET http.request.uri="/v2/a/manifests/v1" http.request.useragent="odd "agent" here" http.response.status=200"#;
    let (_, _, _, _, ua) = request(raw);
    assert_eq!(ua.as_deref(), Some(r#"odd "agent" here"#));
}

#[test]
fn nginx_and_common_format_lines_are_combined_lines() {
    let nginx = r#"10.0.0.5 - ci [01/May/2024:10:00:00 +0200] "HEAD /v2/team/app/manifests/1.4.2 HTTP/1.1" 200 0 "-" "containerd/v1.7.13" "sha256:6b1f""#;
    let (_, method, uri, status, ua) = request(nginx);
    assert_eq!(
        (method.as_str(), uri.as_str(), status),
        ("HEAD", "/v2/team/app/manifests/1.4.2", 200)
    );
    assert_eq!(ua.as_deref(), Some("containerd/v1.7.13"));
    assert_eq!(time_of(nginx), at("2024-05-01T08:00:00.999999999Z"));
    let common =
        r#"10.0.0.5 - - [01/May/2024:10:00:00 +0000] "GET /v2/a/manifests/v1 HTTP/1.1" 304 -"#;
    let (_, _, _, status, ua) = request(common);
    assert_eq!((status, ua), (304, None));
    // A TLS handshake on a plain port: the time counts, there is no request.
    let garbage = r#"10.0.0.9 - - [01/May/2024:10:00:01 +0000] "\x16\x03\x01\x00" 400 157 "-" "-""#;
    assert!(matches!(
        parse_line(garbage),
        Parsed::Line { request: None, .. }
    ));
}

const DIGEST_A: &str = "sha256:6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f";

/// The digest served, size and content type a line logs.
fn served(line: &str) -> (Option<String>, Option<u64>, Option<String>) {
    match parse_line(line) {
        Parsed::Line {
            request: Some(r), ..
        } => (
            r.served.map(|d| d.into_owned()),
            r.size,
            r.content_type.map(|c| c.into_owned()),
        ),
        other => panic!("no request in {line:?}: {other:?}"),
    }
}

#[test]
fn a_digest_logged_after_the_user_agent_is_the_digest_served() {
    let nginx = format!(
        r#"10.0.0.5 - ci [01/May/2024:10:00:00 +0000] "GET /v2/team/app/manifests/1.4.2 HTTP/1.1" 200 1638 "-" "containerd/v1.7.13" {DIGEST_A}"#
    );
    assert_eq!(served(&nginx), (Some(DIGEST_A.into()), Some(1638), None));
    let quoted = format!(
        r#"10.0.0.5 - - [01/May/2024:10:00:00 +0000] "GET /v2/a/manifests/v1 HTTP/1.1" 200 1638 "-" "ua" digest="{DIGEST_A}" rt=0.003"#
    );
    assert_eq!(served(&quoted).0.as_deref(), Some(DIGEST_A));
    // nginx's `-` for a header the response lacked, a digest cut short, one
    // inside the user agent: none is a digest served.
    for line in [
        r#"10.0.0.5 - - [01/May/2024:10:00:00 +0000] "GET /v2/a/manifests/v1 HTTP/1.1" 200 1638 "-" "ua" -"#.to_owned(),
        r#"10.0.0.5 - - [01/May/2024:10:00:00 +0000] "GET /v2/a/manifests/v1 HTTP/1.1" 200 1638 "-" "ua" "sha256:6b1f""#.to_owned(),
        format!(r#"10.0.0.5 - - [01/May/2024:10:00:00 +0000] "GET /v2/a/manifests/v1 HTTP/1.1" 200 1638 "-" "bot {DIGEST_A}""#),
    ] {
        assert_eq!(served(&line).0, None, "{line}");
    }
}

#[test]
fn traefik_clf_lines_are_combined_lines() {
    // Traefik's default access log: CLF and its own fields after the agent.
    let line = r#"192.168.0.7 - - [01/May/2024:10:00:00 +0000] "HEAD /v2/team/app/manifests/1.0 HTTP/1.1" 200 0 "-" "containerd/1.7.13" 42 "registry@docker" "http://172.17.0.2:5000" 3ms"#;
    assert_eq!(
        request(line),
        (
            Format::Combined,
            "HEAD".into(),
            "/v2/team/app/manifests/1.0".into(),
            200,
            Some("containerd/1.7.13".into())
        )
    );
    assert_eq!(served(line), (None, Some(0), None));
}

// Caddy's access log (`format json`) for a manifest GET through
// `reverse_proxy`; the registry's headers are in resp_headers.
const CADDY: &str = r#"{"level":"info","ts":1714557600.123456,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"127.0.0.1","remote_port":"51234","proto":"HTTP/1.1","method":"GET","host":"127.0.0.1:8443","uri":"/v2/team/app/manifests/1.4.2","headers":{"User-Agent":["containerd/v1.7.13"],"Accept":["application/vnd.oci.image.index.v1+json"]}},"user_id":"","duration":0.0031,"size":1638,"status":200,"resp_headers":{"Docker-Content-Digest":["sha256:6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f"],"Content-Type":["application/vnd.oci.image.manifest.v1+json"],"Server":["Caddy"]}}"#;

// Traefik's JSON access log with the agent and the digest kept
// (`accessLog.fields.headers.names`).
const TRAEFIK: &str = r#"{"ClientAddr":"10.0.0.5:40312","ClientHost":"10.0.0.5","ClientPort":"40312","ClientUsername":"-","DownstreamContentSize":1638,"DownstreamStatus":200,"Duration":3000000,"OriginContentSize":1638,"OriginDuration":2900000,"OriginStatus":200,"Overhead":100000,"RequestAddr":"registry.example:443","RequestContentSize":0,"RequestCount":42,"RequestHost":"registry.example","RequestMethod":"HEAD","RequestPath":"/v2/team/app/manifests/1.4.2?ns=docker.io","RequestPort":"443","RequestProtocol":"HTTP/2.0","RequestScheme":"https","RetryAttempts":0,"RouterName":"registry@docker","ServiceName":"registry@docker","StartLocal":"2024-05-01T12:00:00.000000000+02:00","StartUTC":"2024-05-01T10:00:00.000000000Z","downstream_Content-Type":"application/vnd.oci.image.manifest.v1+json","downstream_Docker-Content-Digest":"sha256:6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f6b1f","entryPointName":"websecure","level":"info","msg":"","request_User-Agent":"containerd/v1.7.13","time":"2024-05-01T12:00:00+02:00"}"#;

#[test]
fn caddy_and_traefik_json_access_lines_give_the_request_and_the_digest_served() {
    assert_eq!(
        request(CADDY),
        (
            Format::CaddyJson,
            "GET".into(),
            "/v2/team/app/manifests/1.4.2".into(),
            200,
            Some("containerd/v1.7.13".into())
        )
    );
    assert_eq!(
        served(CADDY),
        (
            Some(DIGEST_A.into()),
            Some(1638),
            Some("application/vnd.oci.image.manifest.v1+json".into())
        )
    );
    let caddy_time = time_of(CADDY)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    assert_eq!(caddy_time.as_secs(), 1_714_557_600);
    assert!(caddy_time.subsec_micros().abs_diff(123_456) <= 1);

    assert_eq!(
        request(TRAEFIK),
        (
            Format::TraefikJson,
            "HEAD".into(),
            "/v2/team/app/manifests/1.4.2?ns=docker.io".into(),
            200,
            Some("containerd/v1.7.13".into())
        )
    );
    assert_eq!(served(TRAEFIK).0.as_deref(), Some(DIGEST_A));
    // Its start, plus how long the request took.
    assert_eq!(time_of(TRAEFIK), at("2024-05-01T10:00:00.003Z"));

    // Caddy's other lines only cover their time; Traefik's headers are
    // dropped by default, and a line without them is still read.
    let startup = r#"{"level":"info","ts":1714557000.5,"logger":"http","msg":"server running","name":"srv0","protocols":["h1","h2","h3"]}"#;
    assert!(matches!(
        parse_line(startup),
        Parsed::Line {
            format: Format::CaddyJson,
            request: None,
            ..
        }
    ));
    let bare = r#"{"DownstreamStatus":200,"RequestMethod":"GET","RequestPath":"/v2/a/manifests/v1","StartUTC":"2024-05-01T10:00:00Z"}"#;
    assert_eq!(request(bare).4, None);
    assert_eq!(served(bare), (None, None, None));
    for (line, reason) in [
        (
            r#"{"level":"info","ts":"soon","logger":"http.log.access","msg":"handled request","request":{}}"#,
            "ts",
        ),
        (
            r#"{"level":"info","ts":1714557600,"logger":"http.log.access","msg":"handled request","request":{"method":"GET"},"status":200}"#,
            "request.uri",
        ),
        (
            r#"{"DownstreamStatus":200,"RequestPath":"/v2/a/manifests/v1"}"#,
            "StartUTC",
        ),
    ] {
        match parse_line(line) {
            Parsed::Rejected(why) => assert!(why.contains(reason), "{line}: {why}"),
            other => panic!("{line} read as {other:?}"),
        }
    }
}

// The terminal format as a container's log keeps it: in colour.
const TTY_LINE: &str = "\u{1b}[36mINFO\u{1b}[0m[0042] response completed                            \u{1b}[36mgo.version\u{1b}[0m=go1.20.8 \u{1b}[36mhttp.request.host\u{1b}[0m=\"localhost:5000\" \u{1b}[36mhttp.request.method\u{1b}[0m=HEAD \u{1b}[36mhttp.request.uri\u{1b}[0m=\"/v2/team/app/manifests/v1\" \u{1b}[36mhttp.request.useragent\u{1b}[0m=\"containerd/1.7.13\" \u{1b}[36mhttp.response.status\u{1b}[0m=200 \u{1b}[36mhttp.response.written\u{1b}[0m=1999";

#[test]
fn terminal_format_lines_take_the_collectors_time() {
    let collected = at("2024-05-01T10:00:00.5Z");
    let context = LineContext {
        collected: Some(collected),
        only: None,
    };
    for line in [
        TTY_LINE.to_owned(),
        TTY_LINE.replace("\u{1b}[36m", "").replace("\u{1b}[0m", ""),
    ] {
        match parse_line_in(&line, context) {
            Parsed::Line {
                format: Format::AppTty,
                time,
                request: Some(r),
                ..
            } => {
                assert_eq!(time, collected);
                assert_eq!(
                    (&*r.method, &*r.uri, r.status, r.user_agent.as_deref()),
                    (
                        "HEAD",
                        "/v2/team/app/manifests/v1",
                        200,
                        Some("containerd/1.7.13")
                    )
                );
                assert_eq!(r.size, Some(1999));
            }
            other => panic!("{line:?} read as {other:?}"),
        }
        // Alone, it has no time.
        match parse_line(&line) {
            Parsed::Rejected(why) => assert!(why.contains("no absolute time"), "{why}"),
            other => panic!("{line:?} read as {other:?}"),
        }
    }
    // Other messages are lines too, with their message whole.
    let started = "INFO[0000] listening on [::]:5000                         go.version=go1.20.8 instance.id=5b69 version=v2.8.2";
    match parse_line_in(started, context) {
        Parsed::Line {
            format: Format::AppTty,
            request: None,
            instance,
            version,
            ..
        } => {
            assert_eq!(instance.as_deref(), Some("5b69"));
            assert_eq!(version.as_deref(), Some("v2.8.2"));
        }
        other => panic!("read as {other:?}"),
    }
}

#[test]
fn a_forced_format_rejects_lines_of_every_other_shape() {
    let only = |format| LineContext {
        collected: None,
        only: Some(format),
    };
    assert!(matches!(
        parse_line_in(CRIO_ACCESS, only(Format::Combined)),
        Parsed::Line {
            format: Format::Combined,
            ..
        }
    ));
    for (line, format) in [
        (CRIO_ACCESS, Format::AppText),
        (CRIO_APP, Format::Combined),
        (JSON_APP, Format::CaddyJson),
        (CADDY, Format::AppJson),
        (TRAEFIK, Format::CaddyJson),
    ] {
        match parse_line_in(line, only(format)) {
            Parsed::Rejected(why) => {
                assert!(
                    why.contains(format.name()) || why.contains("combined-format"),
                    "{why}"
                );
                assert!(why.contains("--pull-log-format"), "{why}");
            }
            other => panic!("{line} read as {other:?} when only {format:?} is"),
        }
    }
    // A line of the forced shape that cannot be read keeps its own reason.
    match parse_line_in(
        "time=\"yesterday\" level=info msg=\"response completed\"",
        only(Format::AppText),
    ) {
        Parsed::Rejected(why) => assert!(why.contains("readable time"), "{why}"),
        other => panic!("read as {other:?}"),
    }
    assert_eq!(Format::from_name("caddy-json"), Some(Format::CaddyJson));
    for format in Format::ALL {
        assert_eq!(Format::from_name(format.name()), Some(format));
    }
    assert_eq!(
        ForcedFormat::from_name("notification"),
        Ok(Some(ForcedFormat::Events))
    );
    assert_eq!(ForcedFormat::from_name("auto"), Ok(None));
    assert!(
        ForcedFormat::from_name("apache")
            .unwrap_err()
            .contains("caddy-json")
    );
}

#[test]
fn lines_of_no_known_shape_are_rejected_with_a_reason() {
    for (line, reason) in [
        (
            "INFO[0042] response completed   http.request.uri=/v2/a/manifests/v1",
            "no absolute time",
        ),
        ("panic: runtime error", "not a registry"),
        (
            "{\"log\":\"x\\n\",\"stream\":\"stderr\",\"time\":\"2024-05-01T10:00:00Z\"}",
            "json-file record",
        ),
        (
            "{\"MESSAGE\":\"x\",\"__REALTIME_TIMESTAMP\":\"1\"}",
            "journalctl JSON record",
        ),
        ("{not json", "not a JSON object"),
        (
            "time=\"yesterday\" level=info msg=\"response completed\"",
            "time",
        ),
        (
            "time=\"2024-05-01T10:00:00Z\" level=info msg=\"response completed\" http.request.method=GET",
            "http.request.uri",
        ),
    ] {
        match parse_line(line) {
            Parsed::Rejected(why) => assert!(why.contains(reason), "{line:?}: {why}"),
            other => panic!("{line:?} read as {other:?}"),
        }
    }
    assert_eq!(parse_line("   \r"), Parsed::Blank);
}

#[test]
fn manifest_paths_name_a_repository_and_a_reference() {
    let pair = |r: &str, t: &str| {
        Some((
            std::borrow::Cow::Owned(r.to_owned()),
            std::borrow::Cow::Owned(t.to_owned()),
        ))
    };
    assert_eq!(
        manifest_reference("/v2/library/nginx/manifests/latest"),
        pair("library/nginx", "latest")
    );
    assert_eq!(
        manifest_reference("//v2/a/manifests/v1?ns=docker.io"),
        pair("a", "v1")
    );
    assert_eq!(
        manifest_reference("/v2/a/manifests/sha256%3Aabc"),
        pair("a", "sha256:abc")
    );
    // The last /manifests/: a repository may be called that.
    assert_eq!(
        manifest_reference("/v2/x/manifests/manifests/v2"),
        pair("x/manifests", "v2")
    );
    for not_a_manifest in [
        "/v2/",
        "/v2/a/blobs/sha256:abc",
        "/v2/a/tags/list",
        "/v2/_catalog",
        "/v2/a/manifests/",
        "/v2/A/manifests/v1",
        "/v2/a/manifests/v1/extra",
        "/v3/a/manifests/v1",
    ] {
        assert_eq!(manifest_reference(not_a_manifest), None, "{not_a_manifest}");
    }
}

fn write_log(dir: &std::path::Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    for line in lines {
        writeln!(f, "{line}").unwrap();
    }
    path
}

fn app_line(time: &str, method: &str, uri: &str, status: u16, ua: &str) -> String {
    format!(
        r#"time="{time}" level=info msg="response completed" http.request.host="r:5000" http.request.method={method} http.request.uri="{uri}" http.request.useragent="{ua}" http.response.status={status}"#
    )
}

fn read(inputs: &[PathBuf]) -> PullLogs {
    read_as(inputs, None)
}

/// [`read`], `--pull-log-format` forcing `format`.
fn read_as(inputs: &[PathBuf], format: Option<ForcedFormat>) -> PullLogs {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docker/registry/v2/repositories")).unwrap();
    let layout = crate::storage::layout::Layout::new(dir.path());
    let index = Index::default();
    PullLogs::read(
        &PullLogConfig {
            inputs: inputs.to_vec(),
            assume_complete: false,
            protect_within: None,
            ignore_user_agents: Vec::new(),
            ignore_clients: Vec::new(),
            format,
        },
        super::HistoryTimes::Filesystem(&layout),
        &index,
        at("2024-06-01T00:00:00Z"),
        &Interrupt::default(),
        &Task::hidden(),
    )
    .unwrap()
    .settle(&index, &crate::digest::DigestMap::default())
}

#[test]
fn a_response_fits_the_manifests_that_served_it_as_stored_or_rewritten() {
    use crate::manifest::ManifestKind::{Image, Index, Schema1};
    let image = Served {
        kind: Image,
        bytes: 1000,
    };
    assert!(image.from(Image, 1000));
    assert!(!image.from(Image, 999));
    assert!(!image.from(Schema1, 1000));
    // A list's linux/amd64 image, given to a client that takes no lists.
    assert!(image.from(Index, 5));
    let schema1 = Served {
        kind: Schema1,
        bytes: 3000,
    };
    // An image converted for a client that takes only schema1.
    assert!(schema1.from(Image, 1000));
    assert!(schema1.from(Index, 1000));
    assert!(schema1.from(Schema1, 3000));
    assert!(!schema1.from(Schema1, 2999));
    let list = Served {
        kind: Index,
        bytes: 700,
    };
    assert!(list.from(Index, 700));
    assert!(!list.from(Image, 700));
    assert!(!list.from(Schema1, 700));
}

#[test]
fn the_last_pull_per_reference_is_kept_in_any_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let early = write_log(
        dir.path(),
        "early.log",
        &[
            app_line(
                "2024-05-01T10:00:00Z",
                "GET",
                "/v2/a/manifests/v1",
                200,
                "skopeo/1",
            ),
            app_line(
                "2024-05-01T11:00:00Z",
                "HEAD",
                "/v2/a/manifests/v1",
                200,
                "containerd/1.7",
            ),
        ],
    );
    let late = write_log(
        dir.path(),
        "late.log",
        &[
            app_line(
                "2024-05-02T10:00:00Z",
                "HEAD",
                "/v2/a/manifests/v1",
                304,
                "docker/27",
            ),
            // Not pulls: a 404, a PUT, a blob.
            app_line(
                "2024-05-03T10:00:00Z",
                "GET",
                "/v2/a/manifests/v2",
                404,
                "x",
            ),
            app_line(
                "2024-05-03T10:00:00Z",
                "PUT",
                "/v2/a/manifests/v3",
                201,
                "x",
            ),
            app_line(
                "2024-05-03T10:00:00Z",
                "GET",
                "/v2/a/blobs/sha256:00",
                200,
                "x",
            ),
        ],
    );
    for order in [[early.clone(), late.clone()], [late.clone(), early.clone()]] {
        let logs = read(&order);
        let last = logs.last_pull("a", "v1").unwrap();
        assert_eq!(last.time, at("2024-05-02T10:00:00Z"));
        assert_eq!(
            (last.method, last.user_agent.as_deref()),
            (Method::Head, Some("docker/27"))
        );
        assert_eq!(logs.last_pull("a", "v2"), None);
        assert_eq!(logs.last_pull("a", "v3"), None);
        assert_eq!(logs.report.pulls, 3);
        assert_eq!(logs.report.references, 1);
        assert_eq!(logs.report.first, Some(at("2024-05-01T10:00:00Z")));
        assert_eq!(logs.report.last, Some(at("2024-05-03T10:00:00Z")));
    }
}

#[test]
fn a_line_not_read_that_names_a_manifest_counts_as_pulled_at_the_files_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(
        dir.path(),
        "app.log",
        &[
            app_line(
                "2024-05-01T10:00:00Z",
                "GET",
                "/v2/a/manifests/v1",
                200,
                "x",
            ),
            "INFO[0042] response completed   http.request.uri=\"/v2/b/manifests/v9\"".into(),
            "garbage".into(),
            app_line("2024-05-04T10:00:00Z", "GET", "/v2/_catalog", 200, "x"),
        ],
    );
    let logs = read(&[log]);
    let b = logs.last_pull("b", "v9").unwrap();
    assert_eq!(
        (b.time, b.method),
        (at("2024-05-04T10:00:00Z"), Method::Unknown)
    );
    let file = &logs.report.files[0];
    assert_eq!((file.lines, file.rejected, file.uncertain_pulls), (4, 2, 1));
    assert_eq!(file.formats.get("distribution-text"), Some(&2));
    assert_eq!(file.rejected_samples[0].line, 2);
    assert!(file.rejected_samples[1].text == "garbage");
}

#[test]
fn gzip_files_are_read_like_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log.1");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    writeln!(gz, "{CONTAINERD_ACCESS}").unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let logs = read(&[path]);
    assert_eq!(logs.report.files[0].compression, Some("gzip"));
    assert_eq!(logs.report.files[0].formats.get("combined"), Some(&1));
    assert!(logs.last_pull("nicolaka/netshoot", "latest").is_some());
}

fn with_spans(spans: &[(&str, &str)]) -> PullLogs {
    let files = spans
        .iter()
        .map(|(from, to)| {
            let mut f = PullLogFile::new(PathBuf::from("x.log"), input::Compression::None);
            f.saw(at(from));
            f.saw(at(to));
            f
        })
        .collect();
    PullLogs {
        table: PullTable::default(),
        report: PullLogReport {
            files,
            ..PullLogReport::default()
        },
    }
}

const DAY: u64 = 86_400;

fn check(spans: &[(&str, &str)], days: u64, assume: bool) -> (Result<(), String>, Coverage) {
    let mut logs = with_spans(spans);
    let result = logs
        .report
        .check_coverage(
            "--keep-pulled-within",
            Age::from_secs(days * DAY),
            at("2024-06-01T00:00:00Z"),
            assume,
        )
        .map_err(|e| e.to_string());
    (result, logs.report.coverage.unwrap())
}

#[test]
fn logs_reaching_over_the_window_cover_it() {
    let (result, coverage) = check(
        &[
            ("2024-05-20T00:00:00Z", "2024-05-26T00:00:00Z"),
            // Rotated: the next file begins half an hour later.
            ("2024-05-26T00:30:00Z", "2024-05-31T23:30:00Z"),
        ],
        10,
        false,
    );
    assert_eq!(result, Ok(()));
    assert!(coverage.missing.is_empty());
    assert_eq!(coverage.covered.len(), 1);
}

#[test]
fn logs_starting_after_the_window_begins_refuse_the_pull_rules() {
    let (result, coverage) = check(
        &[("2024-05-23T00:00:00Z", "2024-05-31T23:59:00Z")],
        10,
        false,
    );
    let err = result.unwrap_err();
    assert!(
        err.contains("missing 2024-05-22T00:00:00Z to 2024-05-23T00:00:00Z (1d)"),
        "{err}"
    );
    assert!(err.contains("--pull-log-assume-complete"), "{err}");
    assert_eq!(coverage.missing.len(), 1);
    let (result, coverage) = check(
        &[("2024-05-23T00:00:00Z", "2024-05-31T23:59:00Z")],
        10,
        true,
    );
    assert_eq!(result, Ok(()));
    assert!(coverage.assumed_complete && !coverage.missing.is_empty());
}

#[test]
fn a_missing_rotation_or_stale_logs_leave_a_hole() {
    // A day missing between two files.
    let (result, coverage) = check(
        &[
            ("2024-05-20T00:00:00Z", "2024-05-25T00:00:00Z"),
            ("2024-05-26T00:00:00Z", "2024-05-31T23:59:00Z"),
        ],
        10,
        false,
    );
    assert!(result.is_err());
    assert_eq!(
        coverage.missing,
        [Span::new(
            at("2024-05-25T00:00:00Z"),
            at("2024-05-26T00:00:00Z")
        )]
    );
    // Logs copied two days ago.
    let (result, coverage) = check(
        &[("2024-05-01T00:00:00Z", "2024-05-30T00:00:00Z")],
        10,
        false,
    );
    assert!(result.is_err());
    assert_eq!(
        coverage.missing,
        [Span::new(
            at("2024-05-30T00:00:00Z"),
            at("2024-06-01T00:00:00Z")
        )]
    );
    // No time at all.
    let (result, _) = check(&[], 1, false);
    assert!(result.unwrap_err().contains("no line with a time"));
}

#[test]
fn logs_without_a_dated_line_refuse_even_a_window_shorter_than_the_hour_allowed() {
    // Every line of another format (a wrong --pull-log-format): nothing is
    // known, however short the window.
    let mut logs = with_spans(&[]);
    let result = logs.report.check_coverage(
        "--keep-pulled-within",
        Age::from_secs(600),
        at("2024-06-01T00:00:00Z"),
        false,
    );
    let error = result.unwrap_err().to_string();
    assert!(error.contains("no line with a time"), "{error}");
    assert_eq!(
        logs.report.coverage.unwrap().missing,
        [Span::new(
            at("2024-05-31T23:50:00Z"),
            at("2024-06-01T00:00:00Z")
        )]
    );
}

#[test]
fn the_newest_pull_of_a_tag_describes_how() {
    let pull = |secs: u64, via: Via, method: Method| LastPull {
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        method,
        via,
        user_agent: Some(Arc::from("containerd/1.7")),
    };
    let by_name = pull(10, Via::Tag(Arc::from("v1")), Method::Head);
    let of_image = pull(20, Via::Tag(Arc::from("stable")), Method::Get);
    let pulls = TagPulls {
        by_name: Some(&by_name),
        of_image: Some(&of_image),
    };
    assert_eq!(pulls.newest(), Some(&of_image));
    assert_eq!(by_name.describe("v1"), "HEAD by tag, containerd/1.7");
    assert_eq!(
        of_image.describe("v1"),
        "GET by tag `stable`, containerd/1.7"
    );
    assert_eq!(
        pull(1, Via::Digest, Method::Get).describe("v1"),
        "GET by digest, containerd/1.7"
    );
}

/// Lines written by docker-registry 2.8.2 (Debian's build) while skopeo
/// pushed `team/app:v1` and pulled it, containerd's user agent sent a HEAD
/// by tag, docker's a GET by digest, and a GET of a missing tag got 404.
fn real_log(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/retention/pulls/testdata")
        .join(format!("registry-2.8.2-{kind}.log"))
}

const REAL_DIGEST: &str = "sha256:199f322acdbed38e4056bcfd4f5aea18d3accaffb111ba5ab736008d77981d72";

#[test]
fn every_line_of_the_real_registrys_logs_is_read_and_three_are_pulls() {
    for (kind, format) in [
        ("text", "distribution-text"),
        ("json", "distribution-json"),
        ("access", "combined"),
    ] {
        let logs = read(&[real_log(kind)]);
        let file = &logs.report.files[0];
        assert_eq!(file.rejected, 0, "{kind}: {:?}", file.rejected_samples);
        assert_eq!(file.formats.get(format), Some(&file.lines), "{kind}");
        // GET by tag, HEAD by tag, GET by digest; not the PUT, the 404, the
        // blobs or /v2/.
        assert_eq!(file.pulls, 3, "{kind}");
        assert_eq!(logs.report.references, 2, "{kind}");
        assert_eq!(logs.last_pull("team/app", "nope"), None, "{kind}");
        let by_digest = logs.last_pull("team/app", REAL_DIGEST).unwrap();
        assert_eq!(
            (
                by_digest.method,
                by_digest.via.clone(),
                by_digest.user_agent.as_deref()
            ),
            (Method::Get, Via::Digest, Some("docker/27.3.1")),
            "{kind}"
        );
        let by_tag = logs.last_pull("team/app", "v1").unwrap();
        if kind == "access" {
            // One-second resolution: both pulls of v1 fell in the same second.
            assert_eq!(by_tag.time, at("2026-12-06T01:55:33.999999999Z"));
        } else {
            assert_eq!(
                (by_tag.method, by_tag.user_agent.as_deref()),
                (Method::Head, Some("containerd/1.7.13")),
                "{kind}"
            );
        }
    }
    // The app log names the instance; the access log does not.
    let text = read(&[real_log("text")]);
    assert_eq!(
        text.report.files[0].instances,
        ["9d4c6082-6b19-495c-8132-4283d1bd2ffb"]
    );
    assert_eq!(text.report.files[0].hosts, ["127.0.0.1:31094"]);
}

/// Notification events docker-registry 2.8.2 (Debian's build) POSTed, one
/// envelope per body, appended as received: skopeo pushed `team/app:pulled`
/// and `team/app:unpulled`, then copied `pulled` (two GETs by tag),
/// containerd's user agent sent a HEAD by tag, docker's a GET by digest.
fn real_events() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/retention/pulls/testdata/registry-2.8.2-events.json")
}

const EVENTS_DIGEST: &str =
    "sha256:10da0171b273707afe6285a612fb7e5ba251c1160ec29c3ca4fc174a638414bb";

/// The real events, each document re-serialized on one line: whole
/// envelopes, or their events one by one, or all events in one array.
fn real_events_as(form: &str) -> String {
    let text = std::fs::read_to_string(real_events()).unwrap();
    let envelopes: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let events = envelopes
        .iter()
        .flat_map(|e| e["events"].as_array().unwrap().clone());
    match form {
        "envelope-lines" => envelopes.iter().map(|e| format!("{e}\n")).collect(),
        "event-lines" => events.map(|e| format!("{e}\n")).collect(),
        "array" => serde_json::to_string_pretty(&events.collect::<Vec<_>>()).unwrap(),
        other => panic!("{other}"),
    }
}

#[test]
fn real_notification_events_are_read_in_every_form_they_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = vec![("pretty-printed", real_events())];
    for form in ["envelope-lines", "event-lines", "array"] {
        let path = dir.path().join(format!("{form}.json"));
        std::fs::write(&path, real_events_as(form)).unwrap();
        inputs.push((form, path));
    }
    for (form, path) in inputs {
        let logs = read(std::slice::from_ref(&path));
        let file = &logs.report.files[0];
        assert_eq!(file.rejected, 0, "{form}: {:?}", file.rejected_samples);
        // Every event counts, pushes and blob pulls included, for the time
        // covered; only the four manifest pulls are pulls.
        assert_eq!(file.lines, 12, "{form}");
        assert_eq!(file.formats.get("events"), Some(&12), "{form}");
        assert_eq!(file.pulls, 4, "{form}");
        assert_eq!(file.first, Some(at("2026-12-06T02:20:11.332689611Z")));
        assert_eq!(file.last, Some(at("2026-12-06T02:20:13.230680523Z")));
        assert_eq!(file.instances, ["f19786c4-bd25-48f1-863c-dcb7df546137"]);
        assert_eq!(file.hosts, ["127.0.0.1:18772"]);
        let by_tag = logs.last_pull("team/app", "pulled").unwrap();
        assert_eq!(
            (
                by_tag.time,
                by_tag.method,
                by_tag.via.clone(),
                by_tag.user_agent.as_deref()
            ),
            (
                at("2026-12-06T02:20:13.137746318Z"),
                Method::Head,
                Via::Tag(Arc::from("pulled")),
                Some("containerd/1.7.13")
            ),
            "{form}"
        );
        let by_digest = logs.last_pull("team/app", EVENTS_DIGEST).unwrap();
        assert_eq!(
            (
                by_digest.method,
                by_digest.via.clone(),
                by_digest.user_agent.as_deref()
            ),
            (Method::Get, Via::Digest, Some("docker/27.3.1")),
            "{form}"
        );
        // Pushed, never pulled; and no blob is a reference.
        assert_eq!(logs.last_pull("team/app", "unpulled"), None, "{form}");
        assert_eq!(logs.report.references, 2, "{form}");
    }
}

#[test]
fn a_pull_by_tag_event_also_pulls_the_manifest_it_served() {
    let dir = tempfile::tempdir().unwrap();
    // Without storage, the tag has no history to attribute the pull to:
    // the digest the event names is still pulled, through the tag.
    let events = real_events_as("event-lines");
    let by_tag_only: String = events
        .lines()
        .filter(|l| l.contains("\"tag\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.path().join("events.json");
    std::fs::write(&path, by_tag_only).unwrap();
    let logs = read(&[path]);
    let served = logs.last_pull("team/app", EVENTS_DIGEST).unwrap();
    assert_eq!(
        (served.method, served.via.clone()),
        (Method::Head, Via::Tag(Arc::from("pulled")))
    );
    assert!(
        logs.pulled_by_digest_since(SystemTime::UNIX_EPOCH)
            .is_empty(),
        "a pull by tag is no pull by digest"
    );
}

#[test]
fn a_truncated_events_file_keeps_what_was_read_and_counts_the_cut_event_as_pulled() {
    let text = std::fs::read_to_string(real_events()).unwrap();
    // Cut the last envelope (the GET by digest) after its URL, and name
    // another repository there, so that only the cut event names it.
    let cut = text.rfind("\"repository\": \"team/app\"").unwrap();
    let url_end = cut + text[cut..].find("\n         },").unwrap();
    let truncated = text[..url_end].replace(
        &format!("/v2/team/app/manifests/{EVENTS_DIGEST}\""),
        &format!("/v2/team/other/manifests/{EVENTS_DIGEST}\""),
    );
    assert_ne!(truncated, text[..url_end], "the URL is in the cut part");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.json");
    std::fs::write(&path, &truncated).unwrap();
    let logs = read(std::slice::from_ref(&path));
    let file = &logs.report.files[0];
    assert_eq!(file.pulls, 3, "the events before the cut are read");
    assert_eq!(file.formats.get("events"), Some(&11));
    assert_eq!(file.rejected, 1);
    let sample = &file.rejected_samples[0];
    assert!(sample.reason.contains("broken JSON"), "{sample:?}");
    assert!(sample.text.contains("EOF"), "{sample:?}");
    assert_eq!(sample.line, truncated.lines().count() as u64);
    assert_eq!(file.uncertain_pulls, 1);
    let uncertain = logs.last_pull("team/other", EVENTS_DIGEST).unwrap();
    assert_eq!(
        (uncertain.method, uncertain.time),
        (Method::Unknown, at("2026-12-06T02:20:13.137746318Z"))
    );
}

#[test]
fn broken_json_mid_file_stops_there_and_what_follows_counts_as_pulled() {
    let lines = real_events_as("event-lines");
    let mut lines: Vec<&str> = lines.lines().collect();
    // A line cut short by a crash, and one more pull after it.
    let digest_pull = lines.pop().unwrap().to_owned();
    let cut = &digest_pull[..digest_pull.len() / 2];
    let after = digest_pull.replace("/v2/team/app/", "/v2/team/after/");
    lines.push(cut);
    lines.push(&after);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let logs = read(&[path]);
    let file = &logs.report.files[0];
    assert_eq!((file.pulls, file.rejected), (3, 1));
    assert!(
        file.rejected_samples[0].text.contains("1 more line"),
        "{:?}",
        file.rejected_samples
    );
    assert!(logs.last_pull("team/after", EVENTS_DIGEST).is_some());
}

#[test]
fn events_that_cannot_be_read_are_rejected_and_the_rest_read() {
    let dir = tempfile::tempdir().unwrap();
    let pull = |time: &str, url: &str, media: &str| {
        serde_json::json!({
            "timestamp": time, "action": "pull",
            "target": {"mediaType": media, "repository": "a/b", "digest": EVENTS_DIGEST, "url": url},
            "request": {"method": "GET", "useragent": "containerd/2.0"},
        })
    };
    let manifest = "application/vnd.oci.image.manifest.v1+json";
    let lines = [
        // A blob pull and a push: events, no pulls.
        pull(
            "2024-05-01T00:00:00Z",
            &format!("http://r/v2/a/b/blobs/{EVENTS_DIGEST}"),
            "application/octet-stream",
        )
        .to_string(),
        serde_json::json!({"timestamp": "2024-05-01T00:00:01Z", "action": "push",
            "target": {"mediaType": manifest, "repository": "a/b", "digest": EVENTS_DIGEST, "tag": "v1"}})
        .to_string(),
        // No time: not read, but it names a manifest pull.
        pull(
            "yesterday",
            &format!("http://r/v2/a/unread/manifests/{EVENTS_DIGEST}"),
            manifest,
        )
        .to_string(),
        "42".to_owned(),
        r#"{"events": "none"}"#.to_owned(),
        // A pull with no URL, told by its media type; with a local offset.
        pull("2024-05-01T02:00:02+02:00", "", manifest).to_string(),
    ];
    let path = write_log(dir.path(), "events.json", &lines);
    let logs = read(&[path]);
    let file = &logs.report.files[0];
    assert_eq!(file.lines, 6);
    assert_eq!(file.formats.get("events"), Some(&3));
    assert_eq!(file.pulls, 1);
    assert_eq!(file.rejected, 3, "{:?}", file.rejected_samples);
    assert!(file.rejected_samples[0].reason.contains("timestamp"));
    assert_eq!(file.rejected_samples[0].line, 3);
    assert_eq!(file.uncertain_pulls, 1);
    let pulled = logs.last_pull("a/b", EVENTS_DIGEST).unwrap();
    assert_eq!(pulled.time, at("2024-05-01T00:00:02Z"));
    assert_eq!(
        logs.last_pull("a/unread", EVENTS_DIGEST).unwrap().method,
        Method::Unknown
    );
}

#[test]
fn json_log_lines_are_not_taken_for_events() {
    use super::events::looks_like_events;
    for line in [
        JSON_APP,
        r#"{"log":"time=\"x\"\n","stream":"stderr","time":"2024-01-01T00:00:00Z"}"#,
        CRIO_APP,
        CRIO_ACCESS,
        "",
    ] {
        assert!(
            !looks_like_events(format!("{line}\n{line}\n").as_bytes()),
            "{line}"
        );
    }
    for head in [
        "{\n   \"events\": [\n",
        "  [\n{\"action\":",
        "{\"events\":[{\"id\":\"x\"}]}\n",
        "{\"id\":\"x\",\"action\":\"pull\",\"target\":{}}\n",
        // An envelope longer than the bytes looked at.
        "{\"events\":[{\"id\":\"x\",\"timest",
    ] {
        assert!(looks_like_events(head.as_bytes()), "{head}");
    }
}

fn agent_pull(minute: u32, repository: &str, ua: &str) -> String {
    app_line(
        &format!("2024-05-01T10:{minute:02}:00Z"),
        "HEAD",
        &format!("/v2/{repository}/manifests/latest"),
        200,
        ua,
    )
}

#[test]
fn the_most_frequent_user_agents_are_counted_per_repository() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for (n, ua) in [
        (3, "containerd/1.7"),
        (2, "Trivy/0.50"),
        (1, "skopeo/1.14"),
        (1, "curl/8.5"),
    ] {
        lines.extend((0..n).map(|m| agent_pull(m, "app", ua)));
    }
    lines.push(agent_pull(9, "other", "Trivy/0.50"));
    // Not a pull: not counted.
    lines.push(app_line(
        "2024-05-01T10:10:00Z",
        "GET",
        "/v2/",
        200,
        "kube-probe/1.29",
    ));
    let logs = read(&[write_log(dir.path(), "app.log", &lines)]);
    let agents = &logs.report.top_user_agents;
    assert_eq!(agents.len(), 2, "{agents:?}");
    let app = &agents[0];
    assert_eq!(
        (app.repository.as_str(), app.pulls, app.user_agents),
        ("app", 7, 4)
    );
    let top: Vec<(&str, u64)> = app
        .top
        .iter()
        .map(|a| (a.user_agent.as_str(), a.pulls))
        .collect();
    assert_eq!(
        top,
        [("containerd/1.7", 3), ("Trivy/0.50", 2), ("curl/8.5", 1)],
        "most pulls first, ties by name"
    );
    assert_eq!(agents[1].top[0].user_agent, "Trivy/0.50");
    let json = serde_json::to_value(&logs.report).unwrap();
    assert_eq!(json["top_user_agents"][0]["top"][0]["pulls"], 3);
    let mut verbose = Vec::new();
    logs.report.write_human(&mut verbose, true).unwrap();
    let verbose = String::from_utf8(verbose).unwrap();
    assert!(
        verbose.contains(
            "app: 7 pulls by containerd/1.7 (3), Trivy/0.50 (2), curl/8.5 (1) and 1 more user agent"
        ),
        "{verbose}"
    );
    let mut short = Vec::new();
    logs.report.write_human(&mut short, false).unwrap();
    assert!(!String::from_utf8(short).unwrap().contains("user agent"));
}

fn instance_line(time: &str, instance: &str) -> String {
    format!(
        r#"time="{time}" level=info msg="response completed" http.request.method=GET http.request.uri="/v2/" http.response.status=200 instance.id={instance}"#
    )
}

/// A file with a line of each of `instances` at every hour from `from` to
/// `to` (days of May 2024).
fn replica_log(
    dir: &std::path::Path,
    name: &str,
    instances: &[&str],
    from: u32,
    to: u32,
) -> PathBuf {
    let mut lines = Vec::new();
    for day in from..=to {
        for hour in [0, 6, 12, 18] {
            for instance in instances {
                lines.push(instance_line(
                    &format!("2024-05-{day:02}T{hour:02}:00:00Z"),
                    instance,
                ));
            }
        }
    }
    write_log(dir, name, &lines)
}

fn kinds(warnings: &[Warning]) -> Vec<WarningKind> {
    warnings.iter().map(|w| w.kind).collect()
}

#[test]
fn a_replica_whose_logs_stop_short_is_warned_about_naming_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = replica_log(dir.path(), "replica-a.log", &["aaaa"], 1, 30);
    let b = replica_log(dir.path(), "replica-b.log", &["bbbb"], 25, 30);
    let logs = read(&[a, b]);
    let warnings = logs
        .report
        .warnings(Some(at("2024-05-01T00:00:00Z")), at("2024-05-31T00:00:00Z"));
    assert_eq!(
        kinds(&warnings),
        [WarningKind::PullLogReplicasMissing],
        "{warnings:?}"
    );
    let w = &warnings[0];
    assert!(w.path.ends_with("replica-a.log"), "{w:?}");
    assert!(
        w.message.contains("2 registry instances")
            && w.message.contains("replica-b.log")
            && w.message
                .contains("2024-05-01T00:00:00Z to 2024-05-25T00:00:00Z"),
        "{}",
        w.message
    );
}

#[test]
fn replicas_logged_over_the_same_time_and_restarts_are_not_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let now = at("2024-05-31T00:00:00Z");
    // Two replicas, both logged throughout (one file each, and one file
    // holding both).
    let a = replica_log(dir.path(), "a.log", &["aaaa"], 1, 30);
    let b = replica_log(dir.path(), "b.log", &["bbbb"], 1, 30);
    assert!(read(&[a, b]).report.warnings(None, now).is_empty());
    let both = replica_log(dir.path(), "both.log", &["aaaa", "bbbb"], 1, 30);
    assert!(read(&[both]).report.warnings(None, now).is_empty());
    // One registry restarted twice: a new instance.id each time, the
    // second restart a rolling update overlapping by a few minutes.
    let first = replica_log(dir.path(), "1.log", &["one"], 1, 10);
    let second = replica_log(dir.path(), "2.log", &["two"], 11, 20);
    let mut third_lines = vec![instance_line("2024-05-20T18:05:00Z", "three")];
    third_lines.push(instance_line("2024-05-20T18:10:00Z", "two"));
    third_lines.push(instance_line("2024-05-20T18:30:00Z", "three"));
    let overlap = write_log(dir.path(), "overlap.log", &third_lines);
    let third = replica_log(dir.path(), "3.log", &["three"], 21, 30);
    let logs = read(&[first, second, overlap, third]);
    assert!(
        logs.report.warnings(None, now).is_empty(),
        "{:?}",
        logs.report.warnings(None, now)
    );
}

#[test]
fn an_app_log_of_registry_3_0_without_access_lines_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let v3_line = |version: &str| {
        format!(
            r#"time="2025-09-11T08:01:26Z" level=info msg="response completed" http.request.method=GET http.request.uri=/v2/a/manifests/v1 http.response.status=200 instance.id=5b69 version={version}"#
        )
    };
    let app = write_log(dir.path(), "app.log", &[v3_line("3.0.0")]);
    let logs = read(std::slice::from_ref(&app));
    assert_eq!(logs.report.files[0].versions, ["3.0.0"]);
    let warnings = logs.report.warnings(None, at("2025-09-12T00:00:00Z"));
    assert_eq!(
        kinds(&warnings),
        [WarningKind::PullLogHeadsMissing],
        "{warnings:?}"
    );
    assert!(warnings[0].path.ends_with("app.log"));
    assert!(
        warnings[0].message.contains("3.0.0"),
        "{}",
        warnings[0].message
    );
    assert!(
        warnings[0].message.contains("access log"),
        "{}",
        warnings[0].message
    );
    // With the access log, or from 3.1.0 on, the HEADs are there.
    let access = write_log(dir.path(), "access.log", &[CRIO_ACCESS.to_owned()]);
    assert!(
        read(&[app, access])
            .report
            .warnings(None, at("2025-09-12T00:00:00Z"))
            .is_empty()
    );
    for version in ["3.1.0", "v2.8.2", "3.10.1"] {
        let fixed = write_log(dir.path(), "fixed.log", &[v3_line(version)]);
        assert!(
            read(&[fixed])
                .report
                .warnings(None, at("2025-09-12T00:00:00Z"))
                .is_empty(),
            "{version}"
        );
    }
}

#[test]
fn an_app_log_without_response_completed_beside_access_lines_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let access = write_log(dir.path(), "access.log", &[CRIO_ACCESS.to_owned()]);
    let quiet = write_log(
        dir.path(),
        "app.log",
        &[r#"time="2025-09-11T08:01:27Z" level=warning msg="error authorizing context: basic authentication challenge""#.to_owned()],
    );
    let logs = read(&[access.clone(), quiet]);
    let warnings = logs.report.warnings(None, at("2025-09-12T00:00:00Z"));
    assert_eq!(
        kinds(&warnings),
        [WarningKind::PullLogAppLinesMissing],
        "{warnings:?}"
    );
    assert!(warnings[0].path.ends_with("app.log"));
    assert!(
        warnings[0].message.contains("access.log"),
        "{}",
        warnings[0].message
    );
    // The access log alone (nginx), or an app log at info: nothing to say.
    assert!(
        read(std::slice::from_ref(&access))
            .report
            .warnings(None, at("2025-09-12T00:00:00Z"))
            .is_empty()
    );
    let info = write_log(dir.path(), "info.log", &[CRIO_APP.to_owned()]);
    assert!(
        read(&[access, info])
            .report
            .warnings(None, at("2025-09-12T00:00:00Z"))
            .is_empty()
    );
}

#[test]
fn client_patterns_match_addresses_as_logs_give_them() {
    let net = ClientPattern::parse("10.1.0.0/16").unwrap();
    for logged in ["10.1.2.3:51234", "10.1.255.255", "10.1.0.9, 192.168.0.1"] {
        assert!(net.matches(logged), "{logged}");
    }
    for logged in [
        "10.2.0.1:5000",
        "192.168.0.1, 10.1.0.9",
        "[::1]:5000",
        "-",
        "",
    ] {
        assert!(!net.matches(logged), "{logged}");
    }
    let one = ClientPattern::parse("10.0.0.7").unwrap();
    assert!(one.matches("10.0.0.7:1") && !one.matches("10.0.0.8:1"));
    let v6 = ClientPattern::parse("fd00::/8").unwrap();
    assert!(v6.matches("[fd12::5]:443") && !v6.matches("[fe80::1]:443"));
    assert!(
        ClientPattern::parse("0.0.0.0/0")
            .unwrap()
            .matches("8.8.8.8:53")
    );
    for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "fd00::/129"] {
        assert!(ClientPattern::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn events_whose_first_line_does_not_look_like_events_are_read_when_forced() {
    let dir = tempfile::tempdir().unwrap();
    // Events one per document, each broken after its first key: the first
    // line alone says nothing of events.
    let text: String = real_events_as("event-lines")
        .lines()
        .map(|event| event.replacen(",", ",\n", 1) + "\n")
        .collect();
    let path = dir.path().join("events.json");
    std::fs::write(&path, &text).unwrap();
    let guessed = read(std::slice::from_ref(&path));
    assert_eq!(guessed.report.pulls, 0);
    assert_eq!(
        guessed.report.files[0].rejected,
        guessed.report.files[0].lines
    );
    let forced = read_as(std::slice::from_ref(&path), Some(ForcedFormat::Events));
    let file = &forced.report.files[0];
    assert_eq!(file.rejected, 0, "{:?}", file.rejected_samples);
    assert!(file.pulls > 0);
    assert_eq!(file.formats.get(events::FORMAT), Some(&file.lines));
    // And a log of lines forced as events is one broken document.
    let log = write_log(dir.path(), "app.log", &[CRIO_APP.to_owned()]);
    let forced = read_as(std::slice::from_ref(&log), Some(ForcedFormat::Events));
    assert_eq!(forced.report.files[0].rejected, 1);
    assert_eq!(forced.report.pulls, 0);
    // The line still names a manifest: it counts as pulled, never lost.
    assert_eq!(forced.report.files[0].uncertain_pulls, 1);
    assert_eq!(
        forced
            .last_pull("library/nginx", "latest")
            .map(|p| p.method),
        Some(Method::Unknown)
    );
}

#[test]
fn pulls_waiting_to_be_narrowed_grow_with_the_tags_not_with_the_lines() {
    use crate::index::{Blob, Repository, Tag};
    let d = |n: u8| Digest::of_bytes(&[n]);
    let (first, second) = (d(1), d(2));
    let mut blobs = vec![Blob::new(first, Some(500)), Blob::new(second, Some(700))];
    blobs.sort_by_key(|b| b.digest);
    let index = Index {
        blobs,
        repositories: vec![Repository {
            name: "app".into(),
            tags: vec![Tag {
                name: "moving".into(),
                current: Some(second),
                history: {
                    let mut h = vec![first, second];
                    h.sort();
                    h
                },
                pushed: Some(at("2024-05-20T00:00:00Z")),
            }],
            ..Repository::default()
        }],
        ..Index::default()
    };
    // `first` set on the 1st, `second` on the 20th: a pull between may
    // have served either.
    let times: ListedHistoryTimes = [(
        (0, 0),
        index.repositories[0].tags[0]
            .history
            .iter()
            .map(|h| {
                at(if *h == first {
                    "2024-05-01T00:00:00Z"
                } else {
                    "2024-05-20T00:00:00Z"
                })
            })
            .collect(),
    )]
    .into_iter()
    .collect();
    let dir = tempfile::tempdir().unwrap();
    // A thousand pulls of `moving`, each with another size written: what
    // a log of odd sizes (or a generated one) holds.
    let lines: Vec<String> = (0..1000)
        .map(|n| {
            format!(
                r#"time="2024-05-10T00:{:02}:{:02}Z" level=info msg="response completed" http.request.method=GET http.request.uri=/v2/app/manifests/moving http.response.contenttype=application/vnd.oci.image.manifest.v1+json http.response.status=200 http.response.written={}"#,
                n / 60,
                n % 60,
                1000 + n
            )
        })
        .chain([
            r#"time="2024-05-10T01:00:00Z" level=info msg="response completed" http.request.method=GET http.request.uri=/v2/app/manifests/moving http.response.contenttype=application/vnd.oci.image.manifest.v1+json http.response.status=200 http.response.written=500"#.to_owned()
        ])
        .collect();
    let log = write_log(dir.path(), "app.log", &lines);
    let read = || {
        PullLogs::read(
            &PullLogConfig {
                inputs: vec![log.clone()],
                ..PullLogConfig::default()
            },
            super::HistoryTimes::Listed(&times),
            &index,
            at("2024-06-01T00:00:00Z"),
            &Interrupt::default(),
            &Task::hidden(),
        )
        .unwrap()
    };
    // One key for every size that fits neither, one for `first`'s size.
    assert_eq!(read().narrowable.len(), 2);
    // Manifests not read: every candidate counts, as without narrowing.
    let logs = read().settle(&index, &crate::digest::DigestMap::default());
    let last = |logs: &PullLogs, d: &Digest| logs.table.get_digest("app", d).map(|p| p.time);
    assert_eq!(last(&logs, &first), Some(at("2024-05-10T01:00:00Z")));
    assert_eq!(last(&logs, &second), Some(at("2024-05-10T01:00:00Z")));
    assert_eq!(logs.report.narrowed, 0);
    // Both images read: the pull of `first`'s size was `first`'s alone;
    // the others fit neither, so both count for them.
    let image = || {
        Ok(crate::gc::mark::Refs {
            kind: ManifestKind::Image,
            ..Default::default()
        })
    };
    let manifests: crate::digest::DigestMap<Loaded> =
        [(first, image()), (second, image())].into_iter().collect();
    let logs = read().settle(&index, &manifests);
    assert_eq!(last(&logs, &first), Some(at("2024-05-10T01:00:00Z")));
    assert_eq!(last(&logs, &second), Some(at("2024-05-10T00:16:39Z")));
    assert_eq!(logs.report.narrowed, 1);
}

#[test]
fn go_durations_are_read_as_the_registry_writes_them() {
    use super::parse::go_duration;
    for (text, micros) in [
        ("2.773353ms", 2_773),
        ("1.6697112s", 1_669_711),
        ("850µs", 850),
        ("850us", 850),
        ("1m2.5s", 62_500_000),
        ("1h0m0s", 3_600_000_000),
        ("0s", 0),
        ("0", 0),
        ("120ns", 0),
    ] {
        assert_eq!(
            go_duration(text).map(|d| d.as_micros()),
            Some(micros),
            "{text}"
        );
    }
    for text in ["", "ms", "2.5", "5 s", "1d", "-1s"] {
        assert_eq!(go_duration(text), None, "{text}");
    }
}

mod never_panics {
    use super::super::parse::{Format, LineContext, go_duration, parse_line_in};
    use proptest::prelude::*;

    fn contexts() -> impl Strategy<Value = LineContext> {
        (
            proptest::option::of(0u64..4_000_000_000),
            proptest::option::of(0usize..Format::ALL.len()),
        )
            .prop_map(|(secs, only)| LineContext {
                collected: secs
                    .map(|s| std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s)),
                only: only.map(|i| Format::ALL[i]),
            })
    }

    proptest! {
        #[test]
        fn arbitrary_lines(line in ".*", context in contexts()) {
            let _ = parse_line_in(&line, context);
            let _ = go_duration(&line);
        }

        #[test]
        fn lines_shaped_like_every_format(
            head in r#"(time="[0-9TZ:.-]{0,30}" |(\x1b\[[0-9;]{0,3}m)?(INFO|WARN)(\x1b\[0m)?\[[0-9A-Z:.-]{0,25}\] |[0-9.:]{1,15} - \S{0,3} \[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9:]{8} [+-][0-9]{4}\] )"#,
            body in r#"(msg="response completed" |response completed {0,40}|"(GET|HEAD) /v2/[a-z/]{0,10}/manifests/[a-z0-9:]{0,70} HTTP/1.1" [0-9]{3} [0-9-]{1,5} ")?.{0,60}"#,
            pairs in proptest::collection::vec(
                r#"(http\.response\.(duration|written|contenttype|status)|http\.request\.(uri|method)|version|instance\.id)=("[^"]{0,20}"?|[0-9a-zµ./:]{0,12})"#, 0..8),
            context in contexts(),
        ) {
            let line = format!("{head}{body} {}", pairs.join(" "));
            let _ = parse_line_in(&line, context);
        }

        #[test]
        fn json_shaped_like_proxy_logs(
            ts in r#"(-?[0-9]{1,22}(\.[0-9]{1,9})?(e[0-9]{1,3})?|"[^"]{0,30}"|null|\[\]|\{\})"#,
            status in r#"(-?[0-9]{1,25}|"[0-9]{0,5}"|null|1\.5)"#,
            size in r#"(-?[0-9]{1,25}|"[0-9]{0,25}"|null|2e30)"#,
            duration in r#"(-?[0-9]{1,25}(\.[0-9]{1,5})?|"[0-9a-z.]{0,8}"|null|1e300)"#,
            header in r#"(\[\]|\["[^"]{0,80}"\]|"[^"]{0,80}"|null|\[1\])"#,
        ) {
            let caddy = format!(
                r#"{{"ts":{ts},"logger":"http.log.access","msg":"handled request","request":{{"method":"GET","uri":"/v2/a/manifests/v1","headers":{{"User-Agent":{header}}}}},"status":{status},"size":{size},"duration":{duration},"resp_headers":{{"Docker-Content-Digest":{header},"Content-Type":{header}}}}}"#
            );
            let traefik = format!(
                r#"{{"StartUTC":{ts},"Duration":{duration},"RequestMethod":"GET","RequestPath":"/v2/a/manifests/v1","DownstreamStatus":{status},"DownstreamContentSize":{size},"downstream_Docker-Content-Digest":{header}}}"#
            );
            let app = format!(
                r#"{{"time":{ts},"msg":"response completed","http.request.method":"GET","http.request.uri":"/v2/a/manifests/v1","http.response.status":{status},"http.response.written":{size},"http.response.duration":{duration},"http.response.contenttype":{header}}}"#
            );
            for line in [caddy, traefik, app] {
                let _ = parse_line_in(&line, LineContext::default());
            }
        }
    }
}

#[test]
fn a_caddy_line_with_an_absurd_duration_is_still_a_pull() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"level":"info","ts":1714557600.5,"logger":"http.log.access","msg":"handled request","request":{"method":"GET","uri":"/v2/a/manifests/v1","headers":{}},"status":200,"size":10,"duration":1.8446744e19}"#;
    let log = write_log(dir.path(), "caddy.log", &[line.to_owned()]);
    let logs = read(&[log]);
    assert_eq!(logs.report.pulls, 1);
    assert!(logs.last_pull("a", "v1").is_some());
}
