//! VPC: VPCs, VSwitches, route tables and route entries.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{arn, check_name};
use crate::cidr;
use crate::cloud::{ActionDef, Ctx, Handler, iso8601, nested};
use crate::error::{CloudError, CloudResult};
use crate::model::{RouteTableRec, State, VSwitch, Vpc};
use crate::params::Params;
use crate::route::{NextHop, RouteEntry, RouteTable};

pub const ACTIONS: &[ActionDef] = &[
    ActionDef {
        name: "CreateVpc",
        handler: Handler::Write(create_vpc),
    },
    ActionDef {
        name: "DescribeVpcs",
        handler: Handler::Read(describe_vpcs),
    },
    ActionDef {
        name: "DeleteVpc",
        handler: Handler::Write(delete_vpc),
    },
    ActionDef {
        name: "CreateVSwitch",
        handler: Handler::Write(create_vswitch),
    },
    ActionDef {
        name: "DescribeVSwitches",
        handler: Handler::Read(describe_vswitches),
    },
    ActionDef {
        name: "DeleteVSwitch",
        handler: Handler::Write(delete_vswitch),
    },
    ActionDef {
        name: "DescribeRouteTables",
        handler: Handler::Read(describe_route_tables),
    },
    ActionDef {
        name: "DescribeRouteEntryList",
        handler: Handler::Read(describe_route_entry_list),
    },
    ActionDef {
        name: "CreateRouteEntry",
        handler: Handler::Write(create_route_entry),
    },
    ActionDef {
        name: "DeleteRouteEntry",
        handler: Handler::Write(delete_route_entry),
    },
    ActionDef {
        name: "DescribeFabricDrops",
        handler: Handler::Read(describe_fabric_drops),
    },
    ActionDef {
        name: "DescribeFabricCounters",
        handler: Handler::Read(describe_fabric_counters),
    },
];

/// The address block cloud services live in; every VPC routes it.
pub const CLOUD_SERVICE_CIDR: &str = "100.64.0.0/10";

fn vpc_json(s: &State, v: &Vpc) -> Value {
    let vsw: Vec<Value> = s
        .vswitches
        .values()
        .filter(|w| w.vpc_id == v.id)
        .map(|w| json!(w.id))
        .collect();
    json!({
        "VpcId": v.id, "VpcName": v.name, "CidrBlock": v.cidr.to_string(), "VRouterId": v.vrouter_id,
        "RouteTableIds": {"RouteTableIds": [v.route_table_id]},
        "Status": "Available", "RegionId": s.region, "CreationTime": iso8601(v.creation_unix_ms),
        "VSwitchIds": {"VSwitchId": vsw},
    })
}

pub fn vpc<'a>(s: &'a State, id: &str) -> CloudResult<&'a Vpc> {
    s.vpcs
        .get(id)
        .ok_or_else(|| CloudError::not_found("InvalidVpcId", id))
}

pub fn vswitch<'a>(s: &'a State, id: &str) -> CloudResult<&'a VSwitch> {
    s.vswitches
        .get(id)
        .ok_or_else(|| CloudError::not_found("InvalidVSwitchId", id))
}

fn route_table<'a>(s: &'a State, id: &str) -> CloudResult<&'a RouteTableRec> {
    s.route_tables
        .get(id)
        .ok_or_else(|| CloudError::not_found("InvalidRouteTableId", id))
}

fn create_vpc(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[arn(s, "vpc", "vpc/*")])?;
    let cidr = cidr::validate_vpc_cidr(p.opt("CidrBlock").unwrap_or("172.16.0.0/12"))?;
    let name = p.opt("VpcName").unwrap_or("").to_owned();
    if !name.is_empty() {
        check_name("VpcName", &name)?;
    }
    let id = ctx.new_id("vpc");
    let vrouter_id = ctx.new_id("vrt");
    let route_table_id = ctx.new_id("vtb");
    let mut table = RouteTable::default();
    table.add(
        RouteEntry {
            destination: CLOUD_SERVICE_CIDR.parse().expect("literal"),
            next_hop: NextHop::Local,
            system: true,
            name: "cloud services".into(),
        },
        usize::MAX,
    )?;
    s.route_tables.insert(
        route_table_id.clone(),
        RouteTableRec {
            id: route_table_id.clone(),
            vpc_id: id.clone(),
            vrouter_id: vrouter_id.clone(),
            table,
        },
    );
    s.vpcs.insert(
        id.clone(),
        Vpc {
            id: id.clone(),
            name,
            cidr,
            vrouter_id: vrouter_id.clone(),
            route_table_id: route_table_id.clone(),
            creation_unix_ms: ctx.now_ms,
        },
    );
    Ok(json!({"VpcId": id, "VRouterId": vrouter_id, "RouteTableId": route_table_id}))
}

fn describe_vpcs(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let ids: Option<Vec<String>> = p
        .opt("VpcId")
        .map(|v| v.split(',').map(|x| x.trim().to_owned()).collect());
    let resources = match &ids {
        Some(ids) => ids
            .iter()
            .map(|i| arn(s, "vpc", &format!("vpc/{i}")))
            .collect(),
        None => vec![arn(s, "vpc", "vpc/*")],
    };
    ctx.authorize(&resources)?;
    let items: Vec<Value> = s
        .vpcs
        .values()
        .filter(|v| ids.as_ref().is_none_or(|ids| ids.contains(&v.id)))
        .filter(|v| p.opt("VpcName").is_none_or(|n| n == v.name))
        .map(|v| vpc_json(s, v))
        .collect();
    let n = items.len();
    let mut out = nested("Vpcs", "Vpc", items);
    out["TotalCount"] = json!(n);
    out["PageNumber"] = json!(1);
    out["PageSize"] = json!(n.max(10));
    Ok(out)
}

fn delete_vpc(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = p.req("VpcId")?.to_owned();
    ctx.authorize(&[arn(s, "vpc", &format!("vpc/{id}"))])?;
    let v = vpc(s, &id)?.clone();
    let deps: Vec<String> = s
        .vswitches
        .values()
        .filter(|w| w.vpc_id == id)
        .map(|w| w.id.clone())
        .chain(
            s.security_groups
                .values()
                .filter(|g| g.vpc_id == id)
                .map(|g| g.id.clone()),
        )
        .collect();
    if !deps.is_empty() {
        return Err(CloudError::new(
            "DependencyViolation",
            format!(
                "The specified VPC {id} still has dependent resources: {}.",
                deps.join(", ")
            ),
            400,
        ));
    }
    s.route_tables.remove(&v.route_table_id);
    s.vpcs.remove(&id);
    Ok(json!({}))
}

fn zone_ok(s: &State, zone: &str) -> bool {
    zone.strip_prefix(&format!("{}-", s.region))
        .is_some_and(|z| z.len() == 1 && z.chars().all(|c| c.is_ascii_lowercase()))
}

fn create_vswitch(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let vpc_id = p.req("VpcId")?.to_owned();
    ctx.authorize(&[
        arn(s, "vpc", &format!("vpc/{vpc_id}")),
        arn(s, "vpc", "vswitch/*"),
    ])?;
    let zone = p.req("ZoneId")?.to_owned();
    let cidr_s = p.req("CidrBlock")?.to_owned();
    let v = vpc(s, &vpc_id)?.clone();
    if !zone_ok(s, &zone) {
        return Err(CloudError::new(
            "InvalidZoneId.NotFound",
            format!(
                "The specified zone {zone:?} does not exist in region {}: expected {}-a … {}-z.",
                s.region, s.region, s.region
            ),
            404,
        ));
    }
    let siblings: Vec<(String, ipnet::Ipv4Net)> = s
        .vswitches
        .values()
        .filter(|w| w.vpc_id == vpc_id)
        .map(|w| (w.id.clone(), w.cidr))
        .collect();
    let net = cidr::validate_vswitch_cidr(
        &cidr_s,
        v.cidr,
        siblings.iter().map(|(i, n)| (i.as_str(), *n)),
    )?;
    let name = p.opt("VSwitchName").unwrap_or("").to_owned();
    if !name.is_empty() {
        check_name("VSwitchName", &name)?;
    }
    let id = ctx.new_id("vsw");
    let rt = s
        .route_tables
        .get_mut(&v.route_table_id)
        .ok_or_else(|| CloudError::internal(format!("vpc {vpc_id} has no route table")))?;
    rt.table.add(
        RouteEntry {
            destination: net,
            next_hop: NextHop::Local,
            system: true,
            name: id.clone(),
        },
        usize::MAX,
    )?;
    s.vswitches.insert(
        id.clone(),
        VSwitch {
            id: id.clone(),
            name,
            vpc_id,
            zone_id: zone,
            cidr: net,
            used: BTreeSet::new(),
            creation_unix_ms: ctx.now_ms,
        },
    );
    Ok(json!({"VSwitchId": id}))
}

fn describe_vswitches(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let res = match p.opt("VSwitchId") {
        Some(id) => arn(s, "vpc", &format!("vswitch/{id}")),
        None => arn(s, "vpc", "vswitch/*"),
    };
    ctx.authorize(&[res])?;
    let items: Vec<Value> = s
        .vswitches
        .values()
        .filter(|w| p.opt("VSwitchId").is_none_or(|x| x == w.id))
        .filter(|w| p.opt("VpcId").is_none_or(|x| x == w.vpc_id))
        .filter(|w| p.opt("ZoneId").is_none_or(|x| x == w.zone_id))
        .map(|w| {
            json!({
                "VSwitchId": w.id, "VSwitchName": w.name, "VpcId": w.vpc_id, "ZoneId": w.zone_id,
                "CidrBlock": w.cidr.to_string(), "Status": "Available",
                "AvailableIpAddressCount": cidr::usable_count(w.cidr) - w.used.len() as u64,
                "CreationTime": iso8601(w.creation_unix_ms),
            })
        })
        .collect();
    let n = items.len();
    let mut out = nested("VSwitches", "VSwitch", items);
    out["TotalCount"] = json!(n);
    Ok(out)
}

fn delete_vswitch(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = p.req("VSwitchId")?.to_owned();
    ctx.authorize(&[arn(s, "vpc", &format!("vswitch/{id}"))])?;
    let w = vswitch(s, &id)?.clone();
    if !w.used.is_empty() {
        return Err(CloudError::new(
            "DependencyViolation",
            format!(
                "The specified VSwitch {id} still has {} address(es) in use by instances or load balancers.",
                w.used.len()
            ),
            400,
        ));
    }
    if let Some(v) = s.vpcs.get(&w.vpc_id).cloned()
        && let Some(rt) = s.route_tables.get_mut(&v.route_table_id)
    {
        rt.table = {
            let mut t = RouteTable::default();
            for e in rt
                .table
                .entries()
                .iter()
                .filter(|e| !(e.system && e.destination == w.cidr))
            {
                t.add(e.clone(), usize::MAX)?;
            }
            t
        };
    }
    s.vswitches.remove(&id);
    Ok(json!({}))
}

fn entry_json(table_id: &str, e: &RouteEntry) -> Value {
    let (hop_type, hop) = match &e.next_hop {
        NextHop::Local => ("local", String::new()),
        NextHop::Instance(i) => ("Instance", i.clone()),
    };
    json!({
        "RouteTableId": table_id, "DestinationCidrBlock": e.destination.to_string(),
        "Type": if e.system { "System" } else { "Custom" }, "Status": "Available",
        "NextHopType": hop_type, "InstanceId": hop, "RouteEntryName": e.name,
    })
}

fn table_json(rt: &RouteTableRec) -> Value {
    let entries: Vec<Value> = rt
        .table
        .entries()
        .iter()
        .map(|e| entry_json(&rt.id, e))
        .collect();
    json!({
        "RouteTableId": rt.id, "VRouterId": rt.vrouter_id, "VpcId": rt.vpc_id, "RouteTableType": "System",
        "RouteEntrys": {"RouteEntry": entries},
    })
}

fn describe_route_tables(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let res = match p.opt("RouteTableId") {
        Some(id) => arn(s, "vpc", &format!("routetable/{id}")),
        None => arn(s, "vpc", "routetable/*"),
    };
    ctx.authorize(&[res])?;
    if let Some(v) = p.opt("VpcId") {
        vpc(s, v)?;
    }
    let items: Vec<Value> = s
        .route_tables
        .values()
        .filter(|rt| p.opt("RouteTableId").is_none_or(|x| x == rt.id))
        .filter(|rt| p.opt("VRouterId").is_none_or(|x| x == rt.vrouter_id))
        .filter(|rt| p.opt("VpcId").is_none_or(|x| x == rt.vpc_id))
        .map(table_json)
        .collect();
    let n = items.len();
    let mut out = nested("RouteTables", "RouteTable", items);
    out["TotalCount"] = json!(n);
    Ok(out)
}

fn describe_route_entry_list(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let id = p.req("RouteTableId")?;
    ctx.authorize(&[arn(s, "vpc", &format!("routetable/{id}"))])?;
    let rt = route_table(s, id)?;
    let items: Vec<Value> = rt
        .table
        .entries()
        .iter()
        .filter(|e| {
            p.opt("DestinationCidrBlock")
                .is_none_or(|d| d == e.destination.to_string())
        })
        .map(|e| entry_json(&rt.id, e))
        .collect();
    Ok(nested("RouteEntrys", "RouteEntry", items))
}

fn create_route_entry(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = p.req("RouteTableId")?.to_owned();
    ctx.authorize(&[arn(s, "vpc", &format!("routetable/{id}"))])?;
    let dst = cidr::parse_cidr("DestinationCidrBlock", p.req("DestinationCidrBlock")?)?;
    let hop_type = p.opt("NextHopType").unwrap_or("Instance");
    if hop_type != "Instance" {
        return Err(CloudError::new(
            "InvalidNextHopType.ValueNotSupported",
            format!("The specified NextHopType {hop_type:?} is not supported: expected Instance."),
            400,
        ));
    }
    let hop = p.req("NextHopId")?.to_owned();
    let rt = route_table(s, &id)?.clone();
    let inst = super::instance(s, &hop)?;
    if inst.vpc_id != rt.vpc_id {
        return Err(CloudError::new(
            "InvalidInstanceId.MismatchVpc",
            format!(
                "The specified instance {hop} is not in the VPC {} of route table {id}.",
                rt.vpc_id
            ),
            400,
        ));
    }
    let quota = s.quotas.route_entries_per_table;
    let name = p.opt("RouteEntryName").unwrap_or("").to_owned();
    let rec = s.route_tables.get_mut(&id).expect("checked above");
    rec.table.add(
        RouteEntry {
            destination: dst,
            next_hop: NextHop::Instance(hop),
            system: false,
            name,
        },
        quota,
    )?;
    Ok(json!({"RouteEntryId": format!("rte-{}-{}", &id[4..], dst)}))
}

fn delete_route_entry(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = p.req("RouteTableId")?.to_owned();
    ctx.authorize(&[arn(s, "vpc", &format!("routetable/{id}"))])?;
    let dst = cidr::parse_cidr("DestinationCidrBlock", p.req("DestinationCidrBlock")?)?;
    let hop = p.opt("NextHopId").map(|h| NextHop::Instance(h.to_owned()));
    route_table(s, &id)?;
    let rec = s.route_tables.get_mut(&id).expect("checked above");
    rec.table.remove(dst, hop.as_ref())?;
    Ok(json!({}))
}

fn fabric<'a>(ctx: &'a Ctx<'_>) -> CloudResult<&'a crate::dataplane::fabric::Fabric> {
    ctx.fabric.as_ref().ok_or_else(|| {
        CloudError::new(
            "OperationDenied.NoDataPlane",
            "The VPC fabric is not running: start cloudsim with --hypervisor local.",
            400,
        )
    })
}

/// Why packets died: the fabric's drop log, newest first. Filters:
/// `InstanceId` (source or destination), `Reason` (NoRoute, SecurityGroup,
/// NoSuchAddress, InstanceNotRunning, Malformed, UnknownSource, …),
/// `IpAddress` (source or destination), `MaxResults` (1–1000, default 100).
fn describe_fabric_drops(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[arn(s, "vpc", "vpc/*")])?;
    let ip = p
        .opt("IpAddress")
        .map(|a| {
            a.parse().map_err(|_| {
                CloudError::invalid_param(format!(
                    "The specified IpAddress {a:?} is not an IPv4 address."
                ))
            })
        })
        .transpose()?;
    let limit = match p.opt_u64("MaxResults")? {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => n as usize,
        Some(n) => {
            return Err(CloudError::invalid_param(format!(
                "The specified MaxResults {n} is not between 1 and 1000."
            )));
        }
    };
    let filter = crate::dataplane::stats::DropFilter {
        reason: p.opt("Reason").map(str::to_owned),
        instance_id: p.opt("InstanceId").map(str::to_owned),
        ip,
        limit,
    };
    Ok(fabric(ctx)?.with_stats(|st| st.drops_json(&filter)))
}

/// Per-ENI packet/byte counters, per-rule hit counters, drops by reason and
/// the conntrack size. Filter: `InstanceId`.
fn describe_fabric_counters(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[arn(s, "vpc", "vpc/*")])?;
    let id = p.opt("InstanceId");
    Ok(fabric(ctx)?.with_stats(|st| st.counters_json(id)))
}
