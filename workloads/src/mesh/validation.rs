//! `pilot.validation.istio.io`: Istio's configuration validation for the
//! networking kinds, as a pure function of the object. Errors carry
//! Istio's wording; the webhook prefixes `configuration is invalid: `.

use serde_json::Value;

/// Validate an Istio config object; `Ok` for kinds without rules.
pub fn validate(obj: &Value) -> Result<(), String> {
    let spec = &obj["spec"];
    let mut errs: Vec<String> = Vec::new();
    match obj["kind"].as_str().unwrap_or("") {
        "VirtualService" => {
            let hosts = spec["hosts"].as_array().map(Vec::len).unwrap_or(0);
            if hosts == 0 {
                errs.push("virtual service must have at least one host".into());
            }
            for h in spec["hosts"].as_array().into_iter().flatten() {
                if h.as_str().is_none_or(|s| s.is_empty()) {
                    errs.push("domain name \"\" invalid (empty name)".into());
                }
            }
            let http = spec["http"].as_array().map(Vec::len).unwrap_or(0);
            let tcp = spec["tcp"].as_array().map(Vec::len).unwrap_or(0);
            let tls = spec["tls"].as_array().map(Vec::len).unwrap_or(0);
            if http + tcp + tls == 0 {
                errs.push("http, tcp or tls must be provided in virtual service".into());
            }
            for r in spec["http"].as_array().into_iter().flatten() {
                let routes = r["route"].as_array();
                if routes.is_none_or(Vec::is_empty) && r["redirect"].is_null() {
                    errs.push("HTTP route or redirect is required".into());
                }
                let mut total = 0;
                let mut weighted = false;
                for d in routes.into_iter().flatten() {
                    if d["destination"]["host"].as_str().is_none_or(str::is_empty) {
                        errs.push("destination is required".into());
                    }
                    if let Some(w) = d["weight"].as_i64() {
                        weighted = true;
                        total += w;
                    }
                }
                if weighted && routes.is_some_and(|r| r.len() > 1) && total != 100 {
                    errs.push(format!("total destination weight {total} != 100"));
                }
            }
        }
        "DestinationRule" if spec["host"].as_str().is_none_or(str::is_empty) => {
            errs.push("domain name \"\" invalid (empty name)".into());
        }
        "Gateway" => {
            let servers = spec["servers"].as_array();
            if servers.is_none_or(Vec::is_empty) {
                errs.push("gateway must have at least one server".into());
            }
            for s in servers.into_iter().flatten() {
                if s["hosts"].as_array().is_none_or(Vec::is_empty) {
                    errs.push("server config must contain at least one host".into());
                }
                if s["port"].is_null() {
                    errs.push("port is required".into());
                }
            }
        }
        "ServiceEntry" => {
            if spec["hosts"].as_array().is_none_or(Vec::is_empty) {
                errs.push("service entry must have at least one host".into());
            }
            if spec["ports"].as_array().is_none_or(Vec::is_empty) {
                errs.push("service entry must have at least one port".into());
            }
        }
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn networking_rules() {
        let vs = |spec: Value| json!({"kind": "VirtualService", "spec": spec});
        let ok = vs(
            json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}),
        );
        assert_eq!(validate(&ok), Ok(()));
        assert_eq!(
            validate(&vs(
                json!({"http": [{"route": [{"destination": {"host": "r"}}]}]})
            )),
            Err("virtual service must have at least one host".into())
        );
        assert_eq!(
            validate(&vs(json!({"hosts": ["r"], "http": [{"route": [
                {"destination": {"host": "a"}, "weight": 50}, {"destination": {"host": "b"}, "weight": 40}]}]}))),
            Err("total destination weight 90 != 100".into())
        );
        assert!(validate(&json!({"kind": "Gateway", "spec": {}})).is_err());
        assert_eq!(validate(&json!({"kind": "Sidecar", "spec": {}})), Ok(()));
    }
}
