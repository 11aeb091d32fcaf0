use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::pki::{self, Ca, CertSpec};
use ackemu_proto::ackemu::fault::v1 as pb;
use ackemu_proto::ackemu::fault::v1::fault_service_client::FaultServiceClient;

use crate::util::{ChildProc, TestResult, ackemu, ackemu_ok, fail, http_get};

pub async fn failpoint_set_changes_a_child_process() -> TestResult {
    let mut child = ChildProc::start(&[])?;
    let t = child.admin.clone();
    assert_eq(child.ask("work")?, "ok")?;

    let out = ackemu_ok(&[
        "chaos",
        "failpoint",
        "set",
        "--target",
        &t,
        "demo/work",
        "return(disk on fire)",
    ])?;
    contains(&out, "failpoint demo/work set to return(disk on fire)")?;
    assert_eq(
        child.ask("work")?,
        "error: failpoint demo/work: disk on fire",
    )?;

    let list = ackemu_ok(&["chaos", "failpoint", "list", "--target", &t])?;
    let row = list
        .lines()
        .find(|l| l.starts_with("demo/work"))
        .ok_or_else(|| fail(format!("demo/work not listed:\n{list}")))?;
    contains(row, "return(disk on fire)")?;

    // next-n: exactly two more failures, then the point turns itself off.
    ackemu_ok(&[
        "chaos",
        "failpoint",
        "set",
        "--target",
        &t,
        "demo/work",
        "2*return",
    ])?;
    assert_eq(
        child.ask("work")?,
        "error: failpoint demo/work: injected error",
    )?;
    assert_eq(
        child.ask("work")?,
        "error: failpoint demo/work: injected error",
    )?;
    assert_eq(child.ask("work")?, "ok")?;

    ackemu_ok(&[
        "chaos",
        "failpoint",
        "set",
        "--target",
        &t,
        "demo/work",
        "return",
    ])?;
    let out = ackemu_ok(&["chaos", "failpoint", "clear", "--target", &t, "demo/work"])?;
    contains(&out, "cleared")?;
    assert_eq(child.ask("work")?, "ok")?;
    Ok(())
}

pub async fn hang_is_listed_in_debug_tasks_and_released_by_clear() -> TestResult {
    let mut child = ChildProc::start(&[])?;
    let t = child.admin.clone();
    ackemu_ok(&[
        "chaos",
        "failpoint",
        "set",
        "--target",
        &t,
        "demo/work",
        "hang",
    ])?;
    child.send("work")?;
    // Wait (bounded) until the child is parked on the point.
    let real = Clock::real();
    let deadline = real.now() + crate::util::DEADLINE;
    let body = loop {
        let (status, body) = http_get(&t, "/debug/tasks").await?;
        assert_eq(status, 200)?;
        if body.contains("failpoint demo/work (hang)") {
            break body;
        }
        if real.now() > deadline {
            return Err(fail(format!("hang never showed in /debug/tasks:\n{body}")));
        }
        tokio::task::yield_now().await;
    };
    let line = body
        .lines()
        .find(|l| l.contains("demo/work (hang)"))
        .unwrap_or_default();
    contains(line, "waiting")?;
    let tasks = ackemu_ok(&["chaos", "tasks", "--target", &t])?;
    contains(&tasks, "on failpoint demo/work (hang)")?;
    if let Some(l) = child.try_line() {
        return Err(fail(format!("child answered while hung: {l:?}")));
    }
    ackemu_ok(&["chaos", "failpoint", "clear", "--target", &t, "demo/work"])?;
    assert_eq(child.next_line()?, "ok")?;
    let (_, body) = http_get(&t, "/debug/tasks").await?;
    if body.contains("demo/work (hang)") {
        return Err(fail(format!("still listed after clear:\n{body}")));
    }
    Ok(())
}

pub async fn metrics_endpoint_is_valid_prometheus_text() -> TestResult {
    let mut child = ChildProc::start(&[])?;
    for _ in 0..3 {
        assert_eq(child.ask("work")?, "ok")?;
    }
    let (status, body) = http_get(&child.admin, "/metrics").await?;
    assert_eq(status, 200)?;
    validate_prometheus(&body)?;
    let sample = body
        .lines()
        .find(|l| l.starts_with("demo_work_total"))
        .ok_or_else(|| fail(format!("demo_work_total missing:\n{body}")))?;
    assert_eq(sample, "demo_work_total 3")?;
    contains(&body, "# TYPE demo_work_total counter")?;
    for (path, want) in [("/healthz", 200), ("/readyz", 200), ("/nope", 404)] {
        let (s, _) = http_get(&child.admin, path).await?;
        assert_eq(s, want)?;
    }
    Ok(())
}

/// Prometheus text exposition format 0.0.4, line by line.
fn validate_prometheus(body: &str) -> TestResult {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut samples = 0;
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            if !(kind == "HELP" || kind == "TYPE") || !name_ok(name) {
                return Err(fail(format!("bad comment line {line:?}")));
            }
            if kind == "TYPE"
                && !["counter", "gauge", "histogram", "summary", "untyped"]
                    .contains(&parts.next().unwrap_or_default())
            {
                return Err(fail(format!("bad TYPE line {line:?}")));
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| fail(format!("sample without value {line:?}")))?;
        let name = series.split('{').next().unwrap_or_default();
        if !name_ok(name) {
            return Err(fail(format!("bad metric name in {line:?}")));
        }
        if series.contains('{') && !series.ends_with('}') {
            return Err(fail(format!("unterminated labels in {line:?}")));
        }
        if value.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&value) {
            return Err(fail(format!("bad value in {line:?}")));
        }
        samples += 1;
    }
    if samples == 0 {
        return Err(fail("no samples"));
    }
    Ok(())
}

pub async fn clock_offset_past_expiry_breaks_mtls_handshakes() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let clock = Clock::real();
    let ca = Ca::generate(
        "ackemu-test-ca",
        &clock,
        Duration::from_secs(10 * 365 * 86400),
    )
    .map_err(|e| fail(e.to_string()))?;
    let year = Duration::from_secs(365 * 86400);
    let server = ca
        .issue(
            &CertSpec::server("localhost", &["localhost"], &[], year),
            &clock,
        )
        .map_err(|e| fail(e.to_string()))?;
    let client = ca
        .issue(
            &CertSpec::client("admin", &["system:masters"], year),
            &clock,
        )
        .map_err(|e| fail(e.to_string()))?;
    for (f, c) in [
        ("ca.crt", ca.cert_pem()),
        ("server.crt", &server.cert_pem),
        ("server.key", &server.key_pem),
    ] {
        std::fs::write(dir.path().join(f), c).map_err(|e| fail(e.to_string()))?;
    }
    let child = ChildProc::start(&[(crate::child::PKI_DIR_ENV, dir.path().display().to_string())])?;
    let tls_addr = child.tls.parse().map_err(|_| fail("bad tls addr"))?;

    let call = |clock: Clock| {
        let ca_pem = ca.cert_pem().to_string();
        let (c, k) = (client.cert_pem.clone(), client.key_pem.clone());
        async move {
            let cfg = pki::client_tls_config(&ca_pem, Some((&c, &k)), &clock, &[b"h2"])
                .map_err(|e| e.to_string())?;
            let ch = pki::grpc::channel(tls_addr, "localhost", cfg).map_err(|e| e.to_string())?;
            FaultServiceClient::new(ch)
                .get_clock(pb::GetClockRequest {})
                .await
                .map(|r| r.into_inner())
                .map_err(|e| format!("{e:?}"))
        }
    };

    // A raw TLS session: the handshake's outcome as the client sees it
    // (alerts included), then the server's first HTTP/2 bytes.
    let handshake = |clock: Clock| {
        let ca_pem = ca.cert_pem().to_string();
        let (c, k) = (client.cert_pem.clone(), client.key_pem.clone());
        async move {
            use tokio::io::AsyncReadExt;
            let cfg = pki::client_tls_config(&ca_pem, Some((&c, &k)), &clock, &[b"h2"])
                .map_err(|e| e.to_string())?;
            let tcp = tokio::net::TcpStream::connect(tls_addr)
                .await
                .map_err(|e| e.to_string())?;
            let name =
                rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 9];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        }
    };

    // Fresh certificates: the handshake works.
    handshake(clock.clone())
        .await
        .map_err(|e| fail(format!("handshake should work: {e}")))?;
    call(clock.clone())
        .await
        .map_err(|e| fail(format!("handshake should work: {e}")))?;

    // The server's cluster clock moves 400 days on: our client certificate
    // is expired in its eyes.
    ackemu_ok(&[
        "chaos",
        "clock",
        "--target",
        &child.admin,
        "--offset",
        "400d",
    ])?;
    if call(clock.clone()).await.is_ok() {
        return Err(fail(
            "grpc call succeeded with an expired client certificate",
        ));
    }
    let err = handshake(clock.clone())
        .await
        .err()
        .ok_or_else(|| fail("handshake succeeded with an expired client certificate"))?;
    if !err.to_ascii_lowercase().contains("expired") {
        return Err(fail(format!(
            "expected a certificate-expired error, got {err}"
        )));
    }

    // Back to now: works again. Then the *client's* clock moves on: it
    // rejects the server's certificate as expired.
    ackemu_ok(&["chaos", "clock", "--target", &child.admin, "--offset", "0"])?;
    call(clock.clone())
        .await
        .map_err(|e| fail(format!("handshake after reset: {e}")))?;
    let skewed = Clock::real();
    skewed.set_offset_ms(400 * 86_400_000);
    if call(skewed.clone()).await.is_ok() {
        return Err(fail(
            "grpc call succeeded with an expired server certificate",
        ));
    }
    let err = handshake(skewed)
        .await
        .err()
        .ok_or_else(|| fail("client accepted an expired server certificate"))?;
    if !err.to_ascii_lowercase().contains("expired") {
        return Err(fail(format!(
            "expected a certificate-expired error, got {err}"
        )));
    }
    let out = ackemu_ok(&["chaos", "clock", "--target", &child.admin])?;
    contains(&out, "offset:       0ms")?;
    Ok(())
}

pub async fn bad_input_gets_clear_errors() -> TestResult {
    let child = ChildProc::start(&[])?;
    let (ok, _, err) = ackemu(&[
        "chaos",
        "failpoint",
        "set",
        "--target",
        &child.admin,
        "demo/work",
        "explode",
    ]);
    if ok {
        return Err(fail("bad spec accepted"));
    }
    contains(&err, "invalid failpoint spec \"explode\"")?;
    let (ok, _, err) = ackemu(&[
        "chaos",
        "clock",
        "--target",
        &child.admin,
        "--offset",
        "soon",
    ]);
    if ok {
        return Err(fail("bad offset accepted"));
    }
    contains(&err, "invalid duration")?;
    let (ok, _, err) = ackemu(&["chaos", "failpoint", "list", "--target", "127.0.0.1:1"]);
    if ok {
        return Err(fail("unreachable target reported success"));
    }
    contains(&err, "cannot reach the admin port")?;
    let (ok, _, err) = ackemu(&["chaos", "failpoint", "list", "--target", "not a uri"]);
    if ok {
        return Err(fail("malformed target accepted"));
    }
    contains(&err, "error:")?;
    Ok(())
}

fn assert_eq(got: impl std::fmt::Display, want: impl std::fmt::Display) -> TestResult {
    let (got, want) = (got.to_string(), want.to_string());
    if got == want {
        Ok(())
    } else {
        Err(fail(format!("expected {want:?}, got {got:?}")))
    }
}

fn contains(hay: &str, needle: &str) -> TestResult {
    if hay.contains(needle) {
        Ok(())
    } else {
        Err(fail(format!("expected {needle:?} in:\n{hay}")))
    }
}
