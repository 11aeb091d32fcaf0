//! The toolbox image's commands, with the output shapes of the real tools so
//! that investigations read like the seed articles.

pub mod nslookup;
pub mod ping;
pub mod resolv;
pub mod telnet;
pub mod wget;

use std::process::ExitCode;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::shutdown_signal;

/// `pause`: hold the pod's namespaces until told to stop.
pub async fn pause() -> Result<ExitCode, String> {
    shutdown_signal().await;
    Ok(ExitCode::SUCCESS)
}

/// `sleep N|infinity` (seconds, fractions allowed).
pub async fn sleep(args: &[String]) -> Result<ExitCode, String> {
    let [arg] = args else {
        return Err("usage: sleep SECONDS|infinity".into());
    };
    if arg == "infinity" {
        shutdown_signal().await;
        return Ok(ExitCode::SUCCESS);
    }
    let secs: f64 = arg
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("invalid time interval '{arg}'"))?;
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("invalid time interval '{arg}'"));
    }
    tokio::select! {
        () = Clock::real().sleep(Duration::from_secs_f64(secs)) => {}
        () = shutdown_signal() => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Parsed options (`(name, value)`, value empty for switches) and positionals.
pub(crate) type Parsed = (Vec<(String, String)>, Vec<String>);

/// Split `-flag=value` / `-flag value` options from positional arguments.
/// `with_value` lists the flags that take a value.
pub(crate) fn parse_opts(args: &[String], with_value: &[&str]) -> Result<Parsed, String> {
    let mut opts = Vec::new();
    let mut pos = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(flag) = a.strip_prefix('-').filter(|f| !f.is_empty() && *a != "-") {
            let flag = flag.trim_start_matches('-');
            if let Some((k, v)) = flag.split_once('=') {
                opts.push((k.to_string(), v.to_string()));
            } else if with_value.contains(&flag) {
                let v = it
                    .next()
                    .ok_or_else(|| format!("option requires an argument -- '{flag}'"))?;
                opts.push((flag.to_string(), v.clone()));
            } else {
                opts.push((flag.to_string(), String::new()));
            }
        } else {
            pos.push(a.clone());
        }
    }
    Ok((opts, pos))
}

pub(crate) fn opt<'a>(opts: &'a [(String, String)], name: &str) -> Option<&'a str> {
    opts.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn secs_opt(
    opts: &[(String, String)],
    name: &str,
    default: f64,
) -> Result<Duration, String> {
    match opt(opts, name) {
        None => Ok(Duration::from_secs_f64(default)),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("invalid number '{v}'")),
    }
}
