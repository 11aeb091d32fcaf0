//! ECS: instances, instance types, RAM roles on instances, and security
//! groups (an ECS API at Alibaba).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{arn, check_name, incorrect_instance_status, instance, instance_mut, ram_arn};
use crate::cidr;
use crate::cloud::{ActionDef, Ctx, Effect, Handler, iso8601, nested};
use crate::error::{CloudError, CloudResult};
use crate::model::{Instance, InstanceStatus, SecurityGroup, State};
use crate::params::Params;
use crate::sg::{self, Direction, Peer, PortRange, Protocol, Rule};

pub const ACTIONS: &[ActionDef] = &[
    ActionDef {
        name: "DescribeInstanceTypes",
        handler: Handler::Read(describe_instance_types),
    },
    ActionDef {
        name: "RunInstances",
        handler: Handler::Write(run_instances),
    },
    ActionDef {
        name: "CreateInstance",
        handler: Handler::Write(create_instance),
    },
    ActionDef {
        name: "StartInstance",
        handler: Handler::Write(start_instance),
    },
    ActionDef {
        name: "StopInstance",
        handler: Handler::Write(stop_instance),
    },
    ActionDef {
        name: "RebootInstance",
        handler: Handler::Write(reboot_instance),
    },
    ActionDef {
        name: "DeleteInstance",
        handler: Handler::Write(delete_instance),
    },
    ActionDef {
        name: "DescribeInstances",
        handler: Handler::Read(describe_instances),
    },
    ActionDef {
        name: "DescribeInstanceAttribute",
        handler: Handler::Read(describe_instance_attribute),
    },
    ActionDef {
        name: "ModifyInstanceAttribute",
        handler: Handler::Write(modify_instance_attribute),
    },
    ActionDef {
        name: "DescribeUserData",
        handler: Handler::Read(describe_user_data),
    },
    ActionDef {
        name: "GetInstanceConsoleOutput",
        handler: Handler::Read(get_instance_console_output),
    },
    ActionDef {
        name: "AttachInstanceRamRole",
        handler: Handler::Write(attach_instance_ram_role),
    },
    ActionDef {
        name: "DetachInstanceRamRole",
        handler: Handler::Write(detach_instance_ram_role),
    },
    ActionDef {
        name: "DescribeInstanceRamRole",
        handler: Handler::Read(describe_instance_ram_role),
    },
    ActionDef {
        name: "JoinSecurityGroup",
        handler: Handler::Write(join_security_group),
    },
    ActionDef {
        name: "LeaveSecurityGroup",
        handler: Handler::Write(leave_security_group),
    },
    ActionDef {
        name: "CreateSecurityGroup",
        handler: Handler::Write(create_security_group),
    },
    ActionDef {
        name: "DeleteSecurityGroup",
        handler: Handler::Write(delete_security_group),
    },
    ActionDef {
        name: "DescribeSecurityGroups",
        handler: Handler::Read(describe_security_groups),
    },
    ActionDef {
        name: "DescribeSecurityGroupAttribute",
        handler: Handler::Read(describe_security_group_attribute),
    },
    ActionDef {
        name: "AuthorizeSecurityGroup",
        handler: Handler::Write(authorize_ingress),
    },
    ActionDef {
        name: "AuthorizeSecurityGroupEgress",
        handler: Handler::Write(authorize_egress),
    },
    ActionDef {
        name: "RevokeSecurityGroup",
        handler: Handler::Write(revoke_ingress),
    },
    ActionDef {
        name: "RevokeSecurityGroupEgress",
        handler: Handler::Write(revoke_egress),
    },
    ActionDef {
        name: "ModifySecurityGroupPolicy",
        handler: Handler::Write(modify_security_group_policy),
    },
];

/// Maximum UserData size (decoded), as ECS enforces.
pub const MAX_USER_DATA_BYTES: usize = 32 * 1024;
/// Security groups one instance may join.
pub const MAX_GROUPS_PER_INSTANCE: usize = 5;

fn inst_arn(s: &State, id: &str) -> String {
    arn(s, "ecs", &format!("instance/{id}"))
}

fn sg_arn(s: &State, id: &str) -> String {
    arn(s, "ecs", &format!("securitygroup/{id}"))
}

pub fn security_group<'a>(s: &'a State, id: &str) -> CloudResult<&'a SecurityGroup> {
    s.security_groups
        .get(id)
        .ok_or_else(|| CloudError::not_found("InvalidSecurityGroupId", id))
}

pub fn decode_user_data(b64: &str) -> CloudResult<String> {
    let bytes = STANDARD.decode(b64.trim()).map_err(|_| {
        CloudError::new(
            "InvalidUserData.Base64FormatInvalid",
            "The specified UserData is not valid base64.",
            400,
        )
    })?;
    if bytes.len() > MAX_USER_DATA_BYTES {
        return Err(CloudError::new(
            "InvalidUserData.SizeExceeded",
            format!(
                "The specified UserData is {} bytes after decoding, more than {MAX_USER_DATA_BYTES}.",
                bytes.len()
            ),
            400,
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        CloudError::new(
            "InvalidUserData.Base64FormatInvalid",
            "The specified UserData is not UTF-8 text.",
            400,
        )
    })
}

/// What a new instance is made of (RunInstances, CreateInstance, ESS).
#[derive(Debug, Clone)]
pub struct InstanceRequest {
    pub instance_type: String,
    pub image_id: String,
    pub vswitch_id: String,
    pub security_group_ids: Vec<String>,
    pub name: String,
    pub host_name: Option<String>,
    pub user_data: String,
    pub ram_role: Option<String>,
    pub private_ip: Option<Ipv4Addr>,
    pub tags: BTreeMap<String, String>,
    pub scaling_group_id: Option<String>,
}

/// Validates and creates `amount` instances; `start` queues their boot.
pub fn create_instances(
    ctx: &mut Ctx<'_>,
    s: &mut State,
    req: &InstanceRequest,
    amount: u32,
    start: bool,
) -> CloudResult<Vec<String>> {
    if !s.instance_types.contains_key(&req.instance_type) {
        return Err(CloudError::new(
            "InvalidInstanceType.ValueNotSupported",
            format!(
                "The specified InstanceType {:?} is not offered; see DescribeInstanceTypes.",
                req.instance_type
            ),
            400,
        ));
    }
    let vsw = super::vpc::vswitch(s, &req.vswitch_id)?.clone();
    if req.security_group_ids.is_empty() {
        return Err(CloudError::missing_param("SecurityGroupId"));
    }
    if req.security_group_ids.len() > MAX_GROUPS_PER_INSTANCE {
        return Err(CloudError::invalid_param(format!(
            "An instance joins at most {MAX_GROUPS_PER_INSTANCE} security groups."
        )));
    }
    for g in &req.security_group_ids {
        let sg = security_group(s, g)?;
        if sg.vpc_id != vsw.vpc_id {
            return Err(CloudError::new(
                "InvalidSecurityGroupId.VPCMismatch",
                format!(
                    "The specified security group {g} is in VPC {}, not in VPC {} of vswitch {}.",
                    sg.vpc_id, vsw.vpc_id, vsw.id
                ),
                400,
            ));
        }
    }
    if let Some(role) = &req.ram_role
        && !s.roles.contains_key(role)
    {
        return Err(CloudError::not_found("EntityNotExist.Role", role));
    }
    if amount == 0 || amount > 100 {
        return Err(CloudError::invalid_param(format!(
            "The specified parameter Amount {amount} is not valid: expected 1 to 100."
        )));
    }
    if req.private_ip.is_some() && amount > 1 {
        return Err(CloudError::invalid_param(
            "PrivateIpAddress can only be given with Amount 1.",
        ));
    }
    if s.instances.len() + amount as usize > s.quotas.instances {
        return Err(CloudError::quota(
            "QuotaExceeded.Instance",
            format!("The instance quota of {} is exhausted.", s.quotas.instances),
        ));
    }
    let mut ids = Vec::new();
    for _ in 0..amount {
        let used = &s.vswitches[&vsw.id].used;
        let ip = cidr::allocate(vsw.cidr, used, req.private_ip)?;
        s.vswitches
            .get_mut(&vsw.id)
            .expect("exists")
            .used
            .insert(ip);
        let id = ctx.new_id("i");
        let host_name = match (&req.host_name, amount) {
            (Some(h), 1) => h.clone(),
            (Some(h), _) => format!("{h}-{}", ids.len() + 1),
            (None, _) => format!("iZ{}Z", &id[2..]),
        };
        s.instances.insert(
            id.clone(),
            Instance {
                id: id.clone(),
                name: if req.name.is_empty() {
                    id.clone()
                } else {
                    req.name.clone()
                },
                host_name,
                instance_type: req.instance_type.clone(),
                image_id: req.image_id.clone(),
                vpc_id: vsw.vpc_id.clone(),
                vswitch_id: vsw.id.clone(),
                zone_id: vsw.zone_id.clone(),
                private_ip: ip,
                security_group_ids: req.security_group_ids.clone(),
                status: if start {
                    InstanceStatus::Pending
                } else {
                    InstanceStatus::Stopped
                },
                user_data: req.user_data.clone(),
                ram_role: req.ram_role.clone(),
                tags: req.tags.clone(),
                creation_unix_ms: ctx.now_ms,
                scaling_group_id: req.scaling_group_id.clone(),
                last_error: None,
                desired_running: start,
            },
        );
        if start {
            ctx.effects.push(Effect::Boot(id.clone()));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Releases an instance: frees its address, drops it from SLBs and its
/// scaling group, queues the backend delete.
pub fn release_instance(ctx: &mut Ctx<'_>, s: &mut State, id: &str) -> CloudResult<()> {
    let inst = s
        .instances
        .remove(id)
        .ok_or_else(|| CloudError::not_found("InvalidInstanceId", id))?;
    if let Some(w) = s.vswitches.get_mut(&inst.vswitch_id) {
        w.used.remove(&inst.private_ip);
    }
    for lb in s.load_balancers.values_mut() {
        lb.backends.retain(|b| b.server_id != id);
    }
    if let Some(g) = inst
        .scaling_group_id
        .as_ref()
        .and_then(|g| s.scaling_groups.get_mut(g))
    {
        g.instance_ids.retain(|i| i != id);
    }
    ctx.effects.push(Effect::Delete(id.to_owned()));
    Ok(())
}

fn instance_request(s: &State, p: &Params) -> CloudResult<InstanceRequest> {
    let mut groups = p.list("SecurityGroupIds", "SecurityGroupIds")?;
    if let Some(g) = p.opt("SecurityGroupId") {
        groups.insert(0, g.to_owned());
    }
    let _ = s;
    Ok(InstanceRequest {
        instance_type: p.req("InstanceType")?.to_owned(),
        image_id: p
            .opt("ImageId")
            .unwrap_or("aliyun_3_x64_20G_alibase")
            .to_owned(),
        vswitch_id: p.req("VSwitchId")?.to_owned(),
        security_group_ids: groups,
        name: p.opt("InstanceName").unwrap_or("").to_owned(),
        host_name: p.opt("HostName").map(str::to_owned),
        user_data: p
            .opt("UserData")
            .map(decode_user_data)
            .transpose()?
            .unwrap_or_default(),
        ram_role: p.opt("RamRoleName").map(str::to_owned),
        private_ip: p
            .opt("PrivateIpAddress")
            .map(|ip| {
                ip.parse::<Ipv4Addr>().map_err(|_| {
                    CloudError::new(
                        "InvalidPrivateIpAddress.Malformed",
                        format!("The specified PrivateIpAddress {ip:?} is not an IPv4 address."),
                        400,
                    )
                })
            })
            .transpose()?,
        tags: p.tags(),
        scaling_group_id: None,
    })
}

fn authorize_create(ctx: &mut Ctx<'_>, s: &State, req: &InstanceRequest) -> CloudResult<()> {
    ctx.authorize(&[arn(s, "ecs", "instance/*")])?;
    if let Some(role) = &req.ram_role {
        ctx.authorize_action(
            "ram:PassRole",
            &[ram_arn(s, &format!("role/{}", role.to_lowercase()))],
        )?;
    }
    Ok(())
}

fn run_instances(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let req = instance_request(s, p)?;
    authorize_create(ctx, s, &req)?;
    let amount = p.opt_u64("Amount")?.unwrap_or(1);
    let ids = create_instances(
        ctx,
        s,
        &req,
        u32::try_from(amount).unwrap_or(u32::MAX),
        true,
    )?;
    Ok(json!({"InstanceIdSets": {"InstanceIdSet": ids}}))
}

fn create_instance(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let req = instance_request(s, p)?;
    authorize_create(ctx, s, &req)?;
    let ids = create_instances(ctx, s, &req, 1, false)?;
    Ok(json!({"InstanceId": ids[0]}))
}

fn one_instance(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<String> {
    let id = p.req("InstanceId")?.to_owned();
    ctx.authorize(&[inst_arn(s, &id)])?;
    instance(s, &id)?;
    Ok(id)
}

fn start_instance(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = one_instance(ctx, s, p)?;
    let inst = instance_mut(s, &id)?;
    if inst.status != InstanceStatus::Stopped {
        return Err(incorrect_instance_status(
            &id,
            inst.status.as_str(),
            "Stopped",
        ));
    }
    inst.status = InstanceStatus::Pending;
    inst.desired_running = true;
    inst.last_error = None;
    ctx.effects.push(Effect::Boot(id));
    Ok(json!({}))
}

fn stop_instance(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = one_instance(ctx, s, p)?;
    let inst = instance_mut(s, &id)?;
    if inst.status != InstanceStatus::Running {
        return Err(incorrect_instance_status(
            &id,
            inst.status.as_str(),
            "Running",
        ));
    }
    inst.status = InstanceStatus::Stopping;
    inst.desired_running = false;
    ctx.effects.push(Effect::Stop(id));
    Ok(json!({}))
}

fn reboot_instance(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = one_instance(ctx, s, p)?;
    let inst = instance_mut(s, &id)?;
    if inst.status != InstanceStatus::Running {
        return Err(incorrect_instance_status(
            &id,
            inst.status.as_str(),
            "Running",
        ));
    }
    inst.status = InstanceStatus::Starting;
    inst.desired_running = true;
    ctx.effects.push(Effect::Stop(id.clone()));
    ctx.effects.push(Effect::Boot(id));
    Ok(json!({}))
}

fn delete_instance(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = one_instance(ctx, s, p)?;
    let force = p.opt_bool("Force")?.unwrap_or(false);
    let inst = instance(s, &id)?;
    if inst.status != InstanceStatus::Stopped && !force {
        return Err(incorrect_instance_status(
            &id,
            inst.status.as_str(),
            "Stopped (or Force=true)",
        ));
    }
    release_instance(ctx, s, &id)?;
    Ok(json!({}))
}

pub fn instance_json(s: &State, i: &Instance) -> Value {
    let t = s.instance_types.get(&i.instance_type);
    let tags: Vec<Value> = i
        .tags
        .iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    json!({
        "InstanceId": i.id, "InstanceName": i.name, "HostName": i.host_name, "InstanceType": i.instance_type,
        "Cpu": t.map(|t| t.cpu_core_count).unwrap_or(0), "Memory": t.map(|t| (t.memory_size_gib * 1024.0) as u64).unwrap_or(0),
        "ImageId": i.image_id, "Status": i.status.as_str(), "RegionId": s.region, "ZoneId": i.zone_id,
        "VpcAttributes": {"VpcId": i.vpc_id, "VSwitchId": i.vswitch_id, "PrivateIpAddress": {"IpAddress": [i.private_ip.to_string()]}},
        "SecurityGroupIds": {"SecurityGroupId": i.security_group_ids},
        "RamRoleName": i.ram_role.clone().unwrap_or_default(),
        "Tags": {"Tag": tags}, "CreationTime": iso8601(i.creation_unix_ms),
        "ScalingGroupId": i.scaling_group_id.clone().unwrap_or_default(),
        "OperationLocks": {"LockReason": i.last_error.iter().map(|e| json!({"LockMsg": e})).collect::<Vec<_>>()},
    })
}

fn describe_instance_types(ctx: &mut Ctx<'_>, s: &State, _p: &Params) -> CloudResult<Value> {
    ctx.authorize(&["*".to_owned()])?;
    let items = s
        .instance_types
        .values()
        .map(|t| json!({"InstanceTypeId": t.id, "CpuCoreCount": t.cpu_core_count, "MemorySize": t.memory_size_gib}))
        .collect();
    Ok(nested("InstanceTypes", "InstanceType", items))
}

fn describe_instances(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let ids = p.list("InstanceIds", "InstanceId")?;
    let resources = if ids.is_empty() {
        vec![arn(s, "ecs", "instance/*")]
    } else {
        ids.iter().map(|i| inst_arn(s, i)).collect()
    };
    ctx.authorize(&resources)?;
    let tags = p.tags();
    let items: Vec<Value> = s
        .instances
        .values()
        .filter(|i| ids.is_empty() || ids.contains(&i.id))
        .filter(|i| p.opt("VpcId").is_none_or(|x| x == i.vpc_id))
        .filter(|i| p.opt("VSwitchId").is_none_or(|x| x == i.vswitch_id))
        .filter(|i| p.opt("Status").is_none_or(|x| x == i.status.as_str()))
        .filter(|i| p.opt("InstanceName").is_none_or(|x| x == i.name))
        .filter(|i| {
            p.opt("SecurityGroupId")
                .is_none_or(|x| i.security_group_ids.iter().any(|g| g == x))
        })
        .filter(|i| {
            p.opt("PrivateIpAddresses")
                .is_none_or(|x| x.contains(&i.private_ip.to_string()))
        })
        .filter(|i| {
            tags.iter()
                .all(|(k, v)| i.tags.get(k).is_some_and(|iv| v.is_empty() || iv == v))
        })
        .map(|i| instance_json(s, i))
        .collect();
    let n = items.len();
    let mut out = nested("Instances", "Instance", items);
    out["TotalCount"] = json!(n);
    Ok(out)
}

fn describe_instance_attribute(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let id = one_instance(ctx, s, p)?;
    Ok(instance_json(s, instance(s, &id)?))
}

fn modify_instance_attribute(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = one_instance(ctx, s, p)?;
    let user_data = p.opt("UserData").map(decode_user_data).transpose()?;
    if let Some(n) = p.opt("InstanceName") {
        check_name("InstanceName", n)?;
    }
    let inst = instance_mut(s, &id)?;
    if let Some(ud) = user_data {
        if inst.status != InstanceStatus::Stopped {
            return Err(incorrect_instance_status(
                &id,
                inst.status.as_str(),
                "Stopped (UserData changes need a stopped instance)",
            ));
        }
        inst.user_data = ud;
    }
    if let Some(n) = p.opt("InstanceName") {
        inst.name = n.to_owned();
    }
    if let Some(h) = p.opt("HostName") {
        inst.host_name = h.to_owned();
    }
    Ok(json!({}))
}

fn describe_user_data(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let id = one_instance(ctx, s, p)?;
    let i = instance(s, &id)?;
    Ok(
        json!({"InstanceId": id, "RegionId": s.region, "UserData": STANDARD.encode(i.user_data.as_bytes())}),
    )
}

/// The instance's serial console so far, base64 (ECS keeps the last
/// 64 KiB): here what its UserData printed.
fn get_instance_console_output(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let id = one_instance(ctx, s, p)?;
    let text = ctx
        .hypervisor
        .as_ref()
        .and_then(|h| h.console_output(&id))
        .unwrap_or_default();
    Ok(json!({"InstanceId": id, "RegionId": s.region,
              "ConsoleOutput": STANDARD.encode(text.as_bytes()),
              "LastUpdateTime": iso8601(ctx.now_ms)}))
}

fn ram_role_targets(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Vec<String>> {
    let ids = p.list("InstanceIds", "InstanceId")?;
    if ids.is_empty() {
        return Err(CloudError::missing_param("InstanceIds"));
    }
    let res: Vec<String> = ids.iter().map(|i| inst_arn(s, i)).collect();
    ctx.authorize(&res)?;
    for i in &ids {
        instance(s, i)?;
    }
    Ok(ids)
}

fn attach_instance_ram_role(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let ids = ram_role_targets(ctx, s, p)?;
    let role = p.req("RamRoleName")?.to_owned();
    ctx.authorize_action(
        "ram:PassRole",
        &[ram_arn(s, &format!("role/{}", role.to_lowercase()))],
    )?;
    if !s.roles.contains_key(&role) {
        return Err(CloudError::not_found("EntityNotExist.Role", &role));
    }
    for id in &ids {
        let inst = instance_mut(s, id)?;
        match &inst.ram_role {
            Some(r) if *r != role => {
                return Err(CloudError::new(
                    "InvalidRamRole.Conflict",
                    format!("The instance {id} already has RAM role {r}; detach it first."),
                    400,
                ));
            }
            _ => inst.ram_role = Some(role.clone()),
        }
    }
    Ok(json!({"TotalCount": ids.len(), "FailCount": 0}))
}

fn detach_instance_ram_role(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let ids = ram_role_targets(ctx, s, p)?;
    for id in &ids {
        let inst = instance_mut(s, id)?;
        if p.opt("RamRoleName")
            .is_none_or(|r| inst.ram_role.as_deref() == Some(r))
        {
            inst.ram_role = None;
        }
    }
    Ok(json!({"TotalCount": ids.len(), "FailCount": 0}))
}

fn describe_instance_ram_role(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let ids = ram_role_targets(ctx, s, p)?;
    let items = ids
        .iter()
        .map(|i| json!({"InstanceId": i, "RamRoleName": s.instances[i].ram_role.clone().unwrap_or_default()}))
        .collect();
    Ok(nested("InstanceRamRoleSets", "InstanceRamRoleSet", items))
}

fn membership(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<(String, String)> {
    let gid = p.req("SecurityGroupId")?.to_owned();
    let iid = p.req("InstanceId")?.to_owned();
    ctx.authorize(&[inst_arn(s, &iid), sg_arn(s, &gid)])?;
    let inst = instance(s, &iid)?;
    let g = security_group(s, &gid)?;
    if g.vpc_id != inst.vpc_id {
        return Err(CloudError::new(
            "InvalidSecurityGroupId.VPCMismatch",
            format!(
                "The security group {gid} is in VPC {}, the instance {iid} in VPC {}.",
                g.vpc_id, inst.vpc_id
            ),
            400,
        ));
    }
    Ok((gid, iid))
}

fn join_security_group(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (gid, iid) = membership(ctx, s, p)?;
    let inst = instance_mut(s, &iid)?;
    if inst.security_group_ids.contains(&gid) {
        return Err(CloudError::new(
            "InvalidInstanceId.AlreadyInSecurityGroup",
            format!("The instance {iid} is already in security group {gid}."),
            400,
        ));
    }
    if inst.security_group_ids.len() >= MAX_GROUPS_PER_INSTANCE {
        return Err(CloudError::quota(
            "QuotaExceeded.SecurityGroup",
            format!("The instance {iid} is already in {MAX_GROUPS_PER_INSTANCE} security groups."),
        ));
    }
    inst.security_group_ids.push(gid);
    Ok(json!({}))
}

fn leave_security_group(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (gid, iid) = membership(ctx, s, p)?;
    let inst = instance_mut(s, &iid)?;
    if !inst.security_group_ids.contains(&gid) {
        return Err(CloudError::new(
            "InvalidInstanceId.NotInSecurityGroup",
            format!("The instance {iid} is not in security group {gid}."),
            400,
        ));
    }
    if inst.security_group_ids.len() == 1 {
        return Err(CloudError::new(
            "InstanceLastSecurityGroup",
            format!(
                "The instance {iid} must belong to at least one security group; join another before leaving {gid}."
            ),
            400,
        ));
    }
    inst.security_group_ids.retain(|g| *g != gid);
    Ok(json!({}))
}

fn create_security_group(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[arn(s, "ecs", "securitygroup/*")])?;
    let vpc_id = p.req("VpcId")?.to_owned();
    super::vpc::vpc(s, &vpc_id)?;
    let name = p.opt("SecurityGroupName").unwrap_or("").to_owned();
    if !name.is_empty() {
        check_name("SecurityGroupName", &name)?;
    }
    let id = ctx.new_id("sg");
    s.security_groups.insert(
        id.clone(),
        SecurityGroup {
            id: id.clone(),
            name,
            vpc_id,
            inner_accept: true,
            rules: Vec::new(),
            creation_unix_ms: ctx.now_ms,
        },
    );
    Ok(json!({"SecurityGroupId": id}))
}

fn delete_security_group(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let id = p.req("SecurityGroupId")?.to_owned();
    ctx.authorize(&[sg_arn(s, &id)])?;
    security_group(s, &id)?;
    let members: Vec<&str> = s
        .instances
        .values()
        .filter(|i| i.security_group_ids.contains(&id))
        .map(|i| i.id.as_str())
        .collect();
    if !members.is_empty() {
        return Err(CloudError::new(
            "DependencyViolation",
            format!(
                "There is still instance(s) in the specified security group {id}: {}.",
                members.join(", ")
            ),
            400,
        ));
    }
    let referrers: Vec<&str> = s
        .security_groups
        .values()
        .filter(|g| g.id != id && g.rules.iter().any(|r| r.peer == Peer::Group(id.clone())))
        .map(|g| g.id.as_str())
        .collect();
    if !referrers.is_empty() {
        return Err(CloudError::new(
            "DependencyViolation",
            format!(
                "The security group {id} is referenced by rules of {}.",
                referrers.join(", ")
            ),
            400,
        ));
    }
    s.security_groups.remove(&id);
    Ok(json!({}))
}

fn describe_security_groups(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let res = match p.opt("SecurityGroupId") {
        Some(id) => sg_arn(s, id),
        None => arn(s, "ecs", "securitygroup/*"),
    };
    ctx.authorize(&[res])?;
    let items: Vec<Value> = s
        .security_groups
        .values()
        .filter(|g| p.opt("SecurityGroupId").is_none_or(|x| x == g.id))
        .filter(|g| p.opt("VpcId").is_none_or(|x| x == g.vpc_id))
        .map(|g| {
            json!({"SecurityGroupId": g.id, "SecurityGroupName": g.name, "VpcId": g.vpc_id,
                   "SecurityGroupType": "normal", "CreationTime": iso8601(g.creation_unix_ms)})
        })
        .collect();
    let n = items.len();
    let mut out = nested("SecurityGroups", "SecurityGroup", items);
    out["TotalCount"] = json!(n);
    Ok(out)
}

pub fn rule_json(r: &Rule) -> Value {
    let (cidr, group) = match &r.peer {
        Peer::Cidr(c) => (c.to_string(), String::new()),
        Peer::Group(g) => (String::new(), g.clone()),
    };
    let (src_cidr, src_group, dst_cidr, dst_group) = match r.direction {
        Direction::Ingress => (cidr, group, String::new(), String::new()),
        Direction::Egress => (String::new(), String::new(), cidr, group),
    };
    json!({
        "SecurityGroupRuleId": r.rule_id,
        "Direction": match r.direction { Direction::Ingress => "ingress", Direction::Egress => "egress" },
        "IpProtocol": r.protocol.as_str(), "PortRange": PortRange::render(r.ports),
        "SourceCidrIp": src_cidr, "SourceGroupId": src_group, "DestCidrIp": dst_cidr, "DestGroupId": dst_group,
        "Policy": r.policy.as_str(), "Priority": r.priority.to_string(), "Description": r.description,
    })
}

fn describe_security_group_attribute(
    ctx: &mut Ctx<'_>,
    s: &State,
    p: &Params,
) -> CloudResult<Value> {
    let id = p.req("SecurityGroupId")?;
    ctx.authorize(&[sg_arn(s, id)])?;
    let g = security_group(s, id)?;
    let dir = match p.opt("Direction").unwrap_or("all") {
        "ingress" => Some(Direction::Ingress),
        "egress" => Some(Direction::Egress),
        "all" => None,
        other => {
            return Err(CloudError::invalid_param(format!(
                "The specified parameter Direction {other:?} is not ingress, egress or all."
            )));
        }
    };
    let rules: Vec<Value> = g
        .rules
        .iter()
        .filter(|r| dir.is_none_or(|d| d == r.direction))
        .map(rule_json)
        .collect();
    Ok(json!({
        "SecurityGroupId": g.id, "SecurityGroupName": g.name, "VpcId": g.vpc_id, "RegionId": s.region,
        "InnerAccessPolicy": if g.inner_accept { "Accept" } else { "Drop" },
        "Permissions": {"Permission": rules},
    }))
}

/// Parses a rule from Authorize/Revoke parameters.
fn parse_rule(s: &State, gid: &str, dir: Direction, p: &Params) -> CloudResult<Rule> {
    let protocol = Protocol::parse(p.req("IpProtocol")?)?;
    let ports = PortRange::parse(p.req("PortRange")?, protocol)?;
    let (cidr_param, group_param) = match dir {
        Direction::Ingress => ("SourceCidrIp", "SourceGroupId"),
        Direction::Egress => ("DestCidrIp", "DestGroupId"),
    };
    let peer = match (p.opt(cidr_param), p.opt(group_param)) {
        (Some(c), None) => {
            let net = crate::cidr::parse_cidr(
                cidr_param,
                if c.contains('/') {
                    c.to_owned()
                } else {
                    format!("{c}/32")
                }
                .as_str(),
            )
            .map_err(|e| {
                CloudError::new(format!("Invalid{cidr_param}.Malformed"), e.message, 400)
            })?;
            Peer::Cidr(net)
        }
        (None, Some(g)) => {
            let other = s
                .security_groups
                .get(g)
                .ok_or_else(|| CloudError::not_found(&format!("Invalid{group_param}"), g))?;
            let own = security_group(s, gid)?;
            if other.vpc_id != own.vpc_id {
                return Err(CloudError::new(
                    "InvalidSecurityGroupId.VPCMismatch",
                    format!("The security group {g} is in another VPC than {gid}."),
                    400,
                ));
            }
            Peer::Group(g.to_owned())
        }
        (Some(_), Some(_)) => {
            return Err(CloudError::invalid_param(format!(
                "Give {cidr_param} or {group_param}, not both."
            )));
        }
        (None, None) => return Err(CloudError::missing_param(cidr_param)),
    };
    Ok(Rule {
        rule_id: String::new(),
        direction: dir,
        protocol,
        ports,
        peer,
        policy: sg::Policy::parse(p.opt("Policy").unwrap_or("accept"))?,
        priority: sg::parse_priority(p.opt("Priority"))?,
        description: p.opt("Description").unwrap_or("").to_owned(),
    })
}

fn authorize_rule(
    ctx: &mut Ctx<'_>,
    s: &mut State,
    p: &Params,
    dir: Direction,
) -> CloudResult<Value> {
    let gid = p.req("SecurityGroupId")?.to_owned();
    ctx.authorize(&[sg_arn(s, &gid)])?;
    security_group(s, &gid)?;
    let mut rule = parse_rule(s, &gid, dir, p)?;
    let g = s.security_groups.get_mut(&gid).expect("checked above");
    // Authorizing an existing permission again is accepted and changes nothing.
    if let Some(existing) = g.rules.iter().find(|r| r.same_permission(&rule)) {
        return Ok(json!({"SecurityGroupRuleId": existing.rule_id}));
    }
    if g.rules.len() >= 200 {
        return Err(CloudError::quota(
            "QuotaExceeded.SecurityGroupRule",
            format!("The security group {gid} already has 200 rules."),
        ));
    }
    rule.rule_id = ctx.new_id("sgr");
    let id = rule.rule_id.clone();
    g.rules.push(rule);
    Ok(json!({"SecurityGroupRuleId": id}))
}

fn revoke_rule(ctx: &mut Ctx<'_>, s: &mut State, p: &Params, dir: Direction) -> CloudResult<Value> {
    let gid = p.req("SecurityGroupId")?.to_owned();
    ctx.authorize(&[sg_arn(s, &gid)])?;
    security_group(s, &gid)?;
    let by_id = p.list("SecurityGroupRuleIds", "SecurityGroupRuleId")?;
    let wanted = if by_id.is_empty() {
        Some(parse_rule(s, &gid, dir, p)?)
    } else {
        None
    };
    let g = s.security_groups.get_mut(&gid).expect("checked above");
    let before = g.rules.len();
    g.rules.retain(|r| {
        let hit = match &wanted {
            Some(w) => r.same_permission(w),
            None => r.direction == dir && by_id.contains(&r.rule_id),
        };
        !hit
    });
    let removed = before - g.rules.len();
    if removed == 0 {
        return Err(CloudError::new(
            "InvalidSecurityGroupRule.RuleNotExist",
            format!("The specified rule does not exist in security group {gid}."),
            404,
        ));
    }
    Ok(json!({"Revoked": removed}))
}

fn authorize_ingress(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    authorize_rule(ctx, s, p, Direction::Ingress)
}

fn authorize_egress(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    authorize_rule(ctx, s, p, Direction::Egress)
}

fn revoke_ingress(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    revoke_rule(ctx, s, p, Direction::Ingress)
}

fn revoke_egress(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    revoke_rule(ctx, s, p, Direction::Egress)
}

fn modify_security_group_policy(
    ctx: &mut Ctx<'_>,
    s: &mut State,
    p: &Params,
) -> CloudResult<Value> {
    let gid = p.req("SecurityGroupId")?.to_owned();
    ctx.authorize(&[sg_arn(s, &gid)])?;
    security_group(s, &gid)?;
    let accept = match p.req("InnerAccessPolicy")?.to_ascii_lowercase().as_str() {
        "accept" => true,
        "drop" => false,
        other => {
            return Err(CloudError::invalid_param(format!(
                "The specified InnerAccessPolicy {other:?} is not Accept or Drop."
            )));
        }
    };
    s.security_groups
        .get_mut(&gid)
        .expect("checked above")
        .inner_accept = accept;
    Ok(json!({}))
}
