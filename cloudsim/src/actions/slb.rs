//! SLB: load balancers with a VIP from a VSwitch, TCP listeners with health
//! checks, weighted ECS backends and the health the data plane reports.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{arn, check_name, instance};
use crate::cidr;
use crate::cloud::{ActionDef, Ctx, Handler, iso8601, nested};
use crate::error::{CloudError, CloudResult};
use crate::model::{Backend, BackendHealth, HealthCheck, LoadBalancer, State, TcpListener};
use crate::params::Params;

pub const ACTIONS: &[ActionDef] = &[
    ActionDef {
        name: "CreateLoadBalancer",
        handler: Handler::Write(create_load_balancer),
    },
    ActionDef {
        name: "DeleteLoadBalancer",
        handler: Handler::Write(delete_load_balancer),
    },
    ActionDef {
        name: "DescribeLoadBalancers",
        handler: Handler::Read(describe_load_balancers),
    },
    ActionDef {
        name: "DescribeLoadBalancerAttribute",
        handler: Handler::Read(describe_load_balancer_attribute),
    },
    ActionDef {
        name: "CreateLoadBalancerTCPListener",
        handler: Handler::Write(create_tcp_listener),
    },
    ActionDef {
        name: "SetLoadBalancerTCPListenerAttribute",
        handler: Handler::Write(set_tcp_listener),
    },
    ActionDef {
        name: "StartLoadBalancerListener",
        handler: Handler::Write(start_listener),
    },
    ActionDef {
        name: "StopLoadBalancerListener",
        handler: Handler::Write(stop_listener),
    },
    ActionDef {
        name: "DeleteLoadBalancerListener",
        handler: Handler::Write(delete_listener),
    },
    ActionDef {
        name: "AddBackendServers",
        handler: Handler::Write(add_backend_servers),
    },
    ActionDef {
        name: "SetBackendServers",
        handler: Handler::Write(set_backend_servers),
    },
    ActionDef {
        name: "RemoveBackendServers",
        handler: Handler::Write(remove_backend_servers),
    },
    ActionDef {
        name: "DescribeHealthStatus",
        handler: Handler::Read(describe_health_status),
    },
];

fn lb_arn(s: &State, id: &str) -> String {
    arn(s, "slb", &format!("loadbalancer/{id}"))
}

pub fn load_balancer<'a>(s: &'a State, id: &str) -> CloudResult<&'a LoadBalancer> {
    s.load_balancers
        .get(id)
        .ok_or_else(|| CloudError::not_found("InvalidLoadBalancerId", id))
}

fn lb_id(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<String> {
    let id = p.req("LoadBalancerId")?.to_owned();
    ctx.authorize(&[lb_arn(s, &id)])?;
    load_balancer(s, &id)?;
    Ok(id)
}

fn create_load_balancer(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[arn(s, "slb", "loadbalancer/*")])?;
    let vsw_id = p.req("VSwitchId")?.to_owned();
    let addr_type = p.opt("AddressType").unwrap_or("intranet");
    if addr_type != "intranet" {
        return Err(CloudError::new(
            "InvalidParameter.AddressType",
            format!(
                "The specified AddressType {addr_type:?} is not supported: only intranet exists (there is no internet)."
            ),
            400,
        ));
    }
    let vsw = super::vpc::vswitch(s, &vsw_id)?.clone();
    let wanted = p
        .opt("Address")
        .map(|a| {
            a.parse().map_err(|_| {
                CloudError::invalid_param(format!(
                    "The specified Address {a:?} is not an IPv4 address."
                ))
            })
        })
        .transpose()?;
    let ip = cidr::allocate(vsw.cidr, &vsw.used, wanted)?;
    let name = p.opt("LoadBalancerName").unwrap_or("").to_owned();
    if !name.is_empty() {
        check_name("LoadBalancerName", &name)?;
    }
    s.vswitches
        .get_mut(&vsw_id)
        .expect("exists")
        .used
        .insert(ip);
    let id = ctx.new_id("lb");
    s.load_balancers.insert(
        id.clone(),
        LoadBalancer {
            id: id.clone(),
            name: name.clone(),
            vpc_id: vsw.vpc_id.clone(),
            vswitch_id: vsw_id.clone(),
            address: ip,
            listeners: BTreeMap::new(),
            backends: Vec::new(),
            creation_unix_ms: ctx.now_ms,
        },
    );
    Ok(
        json!({"LoadBalancerId": id, "Address": ip.to_string(), "LoadBalancerName": name, "VpcId": vsw.vpc_id, "VSwitchId": vsw_id}),
    )
}

fn delete_load_balancer(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = lb_id(ctx, s, p)?;
    let lb = s.load_balancers.remove(&id).expect("checked");
    if let Some(w) = s.vswitches.get_mut(&lb.vswitch_id) {
        w.used.remove(&lb.address);
    }
    for g in s.scaling_groups.values_mut() {
        g.load_balancer_ids.retain(|l| *l != id);
    }
    Ok(json!({}))
}

fn lb_json(lb: &LoadBalancer, s: &State) -> Value {
    json!({
        "LoadBalancerId": lb.id, "LoadBalancerName": lb.name, "Address": lb.address.to_string(),
        "AddressType": "intranet", "NetworkType": "vpc", "VpcId": lb.vpc_id, "VSwitchId": lb.vswitch_id,
        "LoadBalancerStatus": "active", "RegionId": s.region, "CreateTime": iso8601(lb.creation_unix_ms),
        "BackendServers": {"BackendServer": lb.backends.iter().map(|b| backend_health_json(lb, b)).collect::<Vec<_>>()},
    })
}

/// A backend with its health on every listener (what the data plane last
/// reported).
fn backend_health_json(lb: &LoadBalancer, b: &Backend) -> Value {
    let per_listener: Vec<Value> = lb
        .listeners
        .values()
        .map(|l| json!({"ListenerPort": l.port, "ServerHealthStatus": backend_health(l, b).as_str()}))
        .collect();
    json!({"ServerId": b.server_id, "Weight": b.weight, "Type": "ecs", "ListenerHealth": per_listener})
}

fn describe_load_balancers(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let ids: Option<Vec<String>> = p
        .opt("LoadBalancerId")
        .map(|v| v.split(',').map(|x| x.trim().to_owned()).collect());
    let res = match &ids {
        Some(ids) => ids.iter().map(|i| lb_arn(s, i)).collect(),
        None => vec![arn(s, "slb", "loadbalancer/*")],
    };
    ctx.authorize(&res)?;
    let items: Vec<Value> = s
        .load_balancers
        .values()
        .filter(|lb| ids.as_ref().is_none_or(|ids| ids.contains(&lb.id)))
        .filter(|lb| p.opt("Address").is_none_or(|a| a == lb.address.to_string()))
        .filter(|lb| p.opt("LoadBalancerName").is_none_or(|n| n == lb.name))
        .map(|lb| lb_json(lb, s))
        .collect();
    let n = items.len();
    let mut out = nested("LoadBalancers", "LoadBalancer", items);
    out["TotalCount"] = json!(n);
    Ok(out)
}

fn backend_json(b: &Backend) -> Value {
    json!({"ServerId": b.server_id, "Weight": b.weight, "Type": "ecs"})
}

fn describe_load_balancer_attribute(
    ctx: &mut Ctx<'_>,
    s: &State,
    p: &Params,
) -> CloudResult<Value> {
    let id = lb_id(ctx, s, p)?;
    let lb = &s.load_balancers[&id];
    let mut out = lb_json(lb, s);
    let listeners: Vec<Value> = lb
        .listeners
        .values()
        .map(|l| {
            json!({"ListenerPort": l.port, "ListenerProtocol": "tcp", "BackendServerPort": l.backend_port,
                   "Status": if l.running { "running" } else { "stopped" },
                   "HealthCheckConnectPort": l.health_check.connect_port.unwrap_or(l.backend_port),
                   "HealthyThreshold": l.health_check.healthy_threshold, "UnhealthyThreshold": l.health_check.unhealthy_threshold,
                   "HealthCheckInterval": l.health_check.interval_s, "HealthCheckConnectTimeout": l.health_check.connect_timeout_s})
        })
        .collect();
    out["ListenerPortsAndProtocol"] = json!({"ListenerPortAndProtocol": listeners});
    out["BackendServers"] =
        json!({"BackendServer": lb.backends.iter().map(backend_json).collect::<Vec<_>>()});
    Ok(out)
}

fn u32_in(p: &Params, name: &str, lo: u64, hi: u64, default: u32) -> CloudResult<u32> {
    match p.opt_u64(name)? {
        None => Ok(default),
        Some(v) if (lo..=hi).contains(&v) => Ok(v as u32),
        Some(v) => Err(CloudError::invalid_param(format!(
            "The specified parameter {name} {v} is not between {lo} and {hi}."
        ))),
    }
}

fn port(p: &Params, name: &str) -> CloudResult<u16> {
    let v = u32_in(p, name, 1, 65535, 0)?;
    if v == 0 {
        return Err(CloudError::missing_param(name));
    }
    Ok(v as u16)
}

fn health_check(p: &Params, base: &HealthCheck) -> CloudResult<HealthCheck> {
    Ok(HealthCheck {
        connect_port: match p.opt_u64("HealthCheckConnectPort")? {
            None => base.connect_port,
            Some(v) if (1..=65535).contains(&v) => Some(v as u16),
            Some(v) => {
                return Err(CloudError::invalid_param(format!(
                    "The specified HealthCheckConnectPort {v} is not a port."
                )));
            }
        },
        healthy_threshold: u32_in(p, "HealthyThreshold", 2, 10, base.healthy_threshold)?,
        unhealthy_threshold: u32_in(p, "UnhealthyThreshold", 2, 10, base.unhealthy_threshold)?,
        interval_s: u32_in(p, "HealthCheckInterval", 1, 50, base.interval_s)?,
        connect_timeout_s: u32_in(
            p,
            "HealthCheckConnectTimeout",
            1,
            300,
            base.connect_timeout_s,
        )?,
    })
}

fn listener_port(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<(String, u16)> {
    let id = lb_id(ctx, s, p)?;
    Ok((id, port(p, "ListenerPort")?))
}

fn listener_mut<'a>(s: &'a mut State, id: &str, port: u16) -> CloudResult<&'a mut TcpListener> {
    s.load_balancers
        .get_mut(id)
        .and_then(|lb| lb.listeners.get_mut(&port))
        .ok_or_else(|| {
            CloudError::new(
                "ListenerNotFound",
                format!("The specified listener {port} of {id} does not exist."),
                404,
            )
        })
}

fn create_tcp_listener(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (id, lport) = listener_port(ctx, s, p)?;
    let backend_port = port(p, "BackendServerPort")?;
    let hc = health_check(p, &HealthCheck::default())?;
    let lb = s.load_balancers.get_mut(&id).expect("checked");
    if lb.listeners.contains_key(&lport) {
        return Err(CloudError::new(
            "ListenerAlreadyExists",
            format!("The listener {lport} of {id} already exists."),
            400,
        ));
    }
    lb.listeners.insert(
        lport,
        TcpListener {
            port: lport,
            backend_port,
            running: false,
            health_check: hc,
        },
    );
    Ok(json!({}))
}

fn set_tcp_listener(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (id, lport) = listener_port(ctx, s, p)?;
    let l = listener_mut(s, &id, lport)?;
    l.health_check = health_check(p, &l.health_check)?;
    if p.opt("BackendServerPort").is_some() {
        l.backend_port = port(p, "BackendServerPort")?;
    }
    Ok(json!({}))
}

fn start_listener(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (id, lport) = listener_port(ctx, s, p)?;
    listener_mut(s, &id, lport)?.running = true;
    Ok(json!({}))
}

fn stop_listener(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (id, lport) = listener_port(ctx, s, p)?;
    listener_mut(s, &id, lport)?.running = false;
    Ok(json!({}))
}

fn delete_listener(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (id, lport) = listener_port(ctx, s, p)?;
    listener_mut(s, &id, lport)?;
    let lb = s.load_balancers.get_mut(&id).expect("checked");
    lb.listeners.remove(&lport);
    for b in &mut lb.backends {
        b.health.remove(&lport);
    }
    Ok(json!({}))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BackendParam {
    server_id: String,
    #[serde(default)]
    weight: Option<serde_json::Value>,
}

fn parse_backends(
    s: &State,
    lb: &LoadBalancer,
    p: &Params,
) -> CloudResult<Vec<(String, Option<u32>)>> {
    let raw = p.req("BackendServers")?;
    let list: Vec<BackendParam> = serde_json::from_str(raw).map_err(|e| {
        CloudError::invalid_param(format!(
            "The parameter BackendServers is not a JSON list of {{\"ServerId\",\"Weight\"}}: {e}."
        ))
    })?;
    let mut out = Vec::new();
    for b in list {
        let inst = instance(s, &b.server_id)
            .map_err(|_| CloudError::not_found("BackendServer.InvalidServerId", &b.server_id))?;
        if inst.vpc_id != lb.vpc_id {
            return Err(CloudError::new(
                "BackendServer.VpcMismatch",
                format!(
                    "The backend {} is in VPC {}, the load balancer in VPC {}.",
                    b.server_id, inst.vpc_id, lb.vpc_id
                ),
                400,
            ));
        }
        let weight = match b.weight {
            None => None,
            Some(v) => {
                let w = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|x| x.parse().ok()));
                match w {
                    Some(w) if w <= 100 => Some(w as u32),
                    _ => {
                        return Err(CloudError::invalid_param(format!(
                            "The Weight {v} of backend {} is not 0 to 100.",
                            b.server_id
                        )));
                    }
                }
            }
        };
        out.push((b.server_id, weight));
    }
    Ok(out)
}

fn backends_out(lb: &LoadBalancer) -> Value {
    json!({"LoadBalancerId": lb.id, "BackendServers": {"BackendServer": lb.backends.iter().map(backend_json).collect::<Vec<_>>()}})
}

fn add_backend_servers(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = lb_id(ctx, s, p)?;
    let list = parse_backends(s, &s.load_balancers[&id], p)?;
    let lb = s.load_balancers.get_mut(&id).expect("checked");
    for (server, weight) in list {
        match lb.backends.iter_mut().find(|b| b.server_id == server) {
            Some(b) => b.weight = weight.unwrap_or(b.weight),
            None => lb.backends.push(Backend {
                server_id: server,
                weight: weight.unwrap_or(100),
                health: BTreeMap::new(),
            }),
        }
    }
    Ok(backends_out(lb))
}

fn set_backend_servers(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = lb_id(ctx, s, p)?;
    let list = parse_backends(s, &s.load_balancers[&id], p)?;
    let lb = s.load_balancers.get_mut(&id).expect("checked");
    for (server, weight) in &list {
        if !lb.backends.iter().any(|b| b.server_id == *server) {
            return Err(CloudError::not_found("BackendServer.NotAttached", server));
        }
        if let (Some(b), Some(w)) = (
            lb.backends.iter_mut().find(|b| b.server_id == *server),
            weight,
        ) {
            b.weight = *w;
        }
    }
    Ok(backends_out(lb))
}

fn remove_backend_servers(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = lb_id(ctx, s, p)?;
    let list = parse_backends(s, &s.load_balancers[&id], p)?;
    let lb = s.load_balancers.get_mut(&id).expect("checked");
    lb.backends
        .retain(|b| !list.iter().any(|(server, _)| *server == b.server_id));
    Ok(backends_out(lb))
}

/// The health a backend shows on a listener: what the data plane last
/// reported, `unavailable` before any report or while the listener is stopped.
pub fn backend_health(l: &TcpListener, b: &Backend) -> BackendHealth {
    if !l.running {
        return BackendHealth::Unavailable;
    }
    b.health
        .get(&l.port)
        .copied()
        .unwrap_or(BackendHealth::Unavailable)
}

fn describe_health_status(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let id = lb_id(ctx, s, p)?;
    let lb = &s.load_balancers[&id];
    let only: Option<u16> = p
        .opt("ListenerPort")
        .map(|_| port(p, "ListenerPort"))
        .transpose()?;
    let mut items = Vec::new();
    for l in lb
        .listeners
        .values()
        .filter(|l| only.is_none_or(|o| o == l.port))
    {
        for b in &lb.backends {
            items.push(json!({
                "ServerId": b.server_id, "ListenerPort": l.port, "Port": l.backend_port,
                "ServerHealthStatus": backend_health(l, b).as_str(),
                "ServerIp": s.instances.get(&b.server_id).map(|i| i.private_ip.to_string()).unwrap_or_default(),
            }));
        }
    }
    Ok(nested("BackendServers", "BackendServer", items))
}

/// Records a health-check result from the data plane (an internal mutation).
pub fn report_health(
    s: &mut State,
    lb_id: &str,
    listener_port: u16,
    server_id: &str,
    health: BackendHealth,
) -> CloudResult<bool> {
    let lb = s
        .load_balancers
        .get_mut(lb_id)
        .ok_or_else(|| CloudError::not_found("InvalidLoadBalancerId", lb_id))?;
    if !lb.listeners.contains_key(&listener_port) {
        return Err(CloudError::new(
            "ListenerNotFound",
            format!("The listener {listener_port} of {lb_id} does not exist."),
            404,
        ));
    }
    let b = lb
        .backends
        .iter_mut()
        .find(|b| b.server_id == server_id)
        .ok_or_else(|| CloudError::not_found("BackendServer.NotAttached", server_id))?;
    Ok(b.health.insert(listener_port, health) != Some(health))
}
