//! ESS: scaling groups, configurations, rules and activities. A scale-out
//! creates ECS instances from the active configuration (its UserData, RAM
//! role, security group, tags) and adds them to the group's SLBs; a scale-in
//! releases instances. Each change is a scaling activity with a status and a
//! cause; the lifecycle completes InProgress activities as instances come up.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::ecs::{InstanceRequest, create_instances, decode_user_data, release_instance};
use super::{arn, check_name};
use crate::cloud::{ActionDef, Ctx, Handler, iso8601, nested};
use crate::error::{CloudError, CloudResult};
use crate::model::{
    ActivityStatus, AdjustmentType, Backend, InstanceStatus, ScalingActivity, ScalingConfiguration,
    ScalingGroup, ScalingRule, State,
};
use crate::params::Params;

pub const ACTIONS: &[ActionDef] = &[
    ActionDef {
        name: "CreateScalingGroup",
        handler: Handler::Write(create_scaling_group),
    },
    ActionDef {
        name: "ModifyScalingGroup",
        handler: Handler::Write(modify_scaling_group),
    },
    ActionDef {
        name: "DeleteScalingGroup",
        handler: Handler::Write(delete_scaling_group),
    },
    ActionDef {
        name: "DescribeScalingGroups",
        handler: Handler::Read(describe_scaling_groups),
    },
    ActionDef {
        name: "CreateScalingConfiguration",
        handler: Handler::Write(create_scaling_configuration),
    },
    ActionDef {
        name: "ModifyScalingConfiguration",
        handler: Handler::Write(modify_scaling_configuration),
    },
    ActionDef {
        name: "DescribeScalingConfigurations",
        handler: Handler::Read(describe_scaling_configurations),
    },
    ActionDef {
        name: "EnableScalingGroup",
        handler: Handler::Write(enable_scaling_group),
    },
    ActionDef {
        name: "DisableScalingGroup",
        handler: Handler::Write(disable_scaling_group),
    },
    ActionDef {
        name: "CreateScalingRule",
        handler: Handler::Write(create_scaling_rule),
    },
    ActionDef {
        name: "DescribeScalingRules",
        handler: Handler::Read(describe_scaling_rules),
    },
    ActionDef {
        name: "ExecuteScalingRule",
        handler: Handler::Write(execute_scaling_rule),
    },
    ActionDef {
        name: "RemoveInstances",
        handler: Handler::Write(remove_instances),
    },
    ActionDef {
        name: "DescribeScalingInstances",
        handler: Handler::Read(describe_scaling_instances),
    },
    ActionDef {
        name: "DescribeScalingActivities",
        handler: Handler::Read(describe_scaling_activities),
    },
];

fn group_arn(s: &State, id: &str) -> String {
    arn(s, "ess", &format!("scalinggroup/{id}"))
}

fn group<'a>(s: &'a State, id: &str) -> CloudResult<&'a ScalingGroup> {
    s.scaling_groups
        .get(id)
        .ok_or_else(|| CloudError::not_found("InvalidScalingGroupId", id))
}

fn group_id(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<String> {
    let id = p.req("ScalingGroupId")?.to_owned();
    ctx.authorize(&[group_arn(s, &id)])?;
    group(s, &id)?;
    Ok(id)
}

fn check_sizes(min: u32, max: u32, desired: Option<u32>) -> CloudResult<()> {
    if min > max || max > 1000 {
        return Err(CloudError::new(
            "InvalidParameter.Conflict",
            format!("The MinSize {min} must not exceed the MaxSize {max} (at most 1000)."),
            400,
        ));
    }
    if let Some(d) = desired
        && !(min..=max).contains(&d)
    {
        return Err(CloudError::new(
            "InvalidParameter.Conflict",
            format!("The DesiredCapacity {d} must be between MinSize {min} and MaxSize {max}."),
            400,
        ));
    }
    Ok(())
}

fn u32_param(p: &Params, name: &str) -> CloudResult<Option<u32>> {
    p.opt_u64(name)?
        .map(|v| {
            u32::try_from(v).map_err(|_| {
                CloudError::invalid_param(format!("The parameter {name} {v} is too large."))
            })
        })
        .transpose()
}

fn create_scaling_group(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[arn(s, "ess", "scalinggroup/*")])?;
    let min = u32_param(p, "MinSize")?.ok_or_else(|| CloudError::missing_param("MinSize"))?;
    let max = u32_param(p, "MaxSize")?.ok_or_else(|| CloudError::missing_param("MaxSize"))?;
    let desired = u32_param(p, "DesiredCapacity")?;
    check_sizes(min, max, desired)?;
    let mut vsws = p.list("VSwitchIds", "VSwitchIds")?;
    if let Some(v) = p.opt("VSwitchId") {
        vsws.insert(0, v.to_owned());
    }
    if vsws.is_empty() {
        return Err(CloudError::missing_param("VSwitchId"));
    }
    for v in &vsws {
        super::vpc::vswitch(s, v)?;
    }
    let lbs: Vec<String> = match p.opt("LoadBalancerIds") {
        Some(raw) => serde_json::from_str(raw).map_err(|_| {
            CloudError::invalid_param(
                "The parameter LoadBalancerIds is not a JSON array of strings.",
            )
        })?,
        None => Vec::new(),
    };
    for lb in &lbs {
        super::slb::load_balancer(s, lb)?;
    }
    let name = p.opt("ScalingGroupName").unwrap_or("").to_owned();
    if !name.is_empty() {
        check_name("ScalingGroupName", &name)?;
    }
    let id = ctx.new_id("asg");
    s.scaling_groups.insert(
        id.clone(),
        ScalingGroup {
            id: id.clone(),
            name,
            min_size: min,
            max_size: max,
            desired_capacity: desired,
            vswitch_ids: vsws,
            load_balancer_ids: lbs,
            active_configuration_id: None,
            enabled: false,
            instance_ids: Vec::new(),
            creation_unix_ms: ctx.now_ms,
        },
    );
    Ok(json!({"ScalingGroupId": id}))
}

fn check_instance_type(s: &State, instance_type: &str) -> CloudResult<()> {
    if !s.instance_types.contains_key(instance_type) {
        return Err(CloudError::new(
            "InvalidInstanceType.ValueNotSupported",
            format!("The specified InstanceType {instance_type:?} is not offered."),
            400,
        ));
    }
    Ok(())
}

/// A role instances will assume: the caller must be allowed to pass it.
fn check_ram_role(ctx: &mut Ctx<'_>, s: &State, role: &str) -> CloudResult<()> {
    ctx.authorize_action(
        "ram:PassRole",
        &[super::ram_arn(s, &format!("role/{}", role.to_lowercase()))],
    )?;
    if !s.roles.contains_key(role) {
        return Err(CloudError::not_found("EntityNotExist.Role", role));
    }
    Ok(())
}

fn tags_param(p: &Params) -> CloudResult<Option<BTreeMap<String, String>>> {
    match p.opt("Tags") {
        Some(raw) => serde_json::from_str(raw).map(Some).map_err(|_| {
            CloudError::invalid_param("The parameter Tags is not a JSON object of strings.")
        }),
        None => {
            let t = p.tags();
            Ok((!t.is_empty()).then_some(t))
        }
    }
}

fn create_scaling_configuration(
    ctx: &mut Ctx<'_>,
    s: &mut State,
    p: &Params,
) -> CloudResult<Value> {
    let gid = group_id(ctx, s, p)?;
    let instance_type = p.req("InstanceType")?.to_owned();
    check_instance_type(s, &instance_type)?;
    let sg = p.req("SecurityGroupId")?.to_owned();
    super::ecs::security_group(s, &sg)?;
    let ram_role = p.opt("RamRoleName").map(str::to_owned);
    if let Some(r) = &ram_role {
        check_ram_role(ctx, s, r)?;
    }
    let tags = tags_param(p)?.unwrap_or_default();
    let id = ctx.new_id("asc");
    s.scaling_configurations.insert(
        id.clone(),
        ScalingConfiguration {
            id: id.clone(),
            scaling_group_id: gid,
            name: p.opt("ScalingConfigurationName").unwrap_or("").to_owned(),
            instance_type,
            image_id: p
                .opt("ImageId")
                .unwrap_or("aliyun_3_x64_20G_alibase")
                .to_owned(),
            security_group_id: sg,
            user_data: p
                .opt("UserData")
                .map(decode_user_data)
                .transpose()?
                .unwrap_or_default(),
            ram_role,
            tags,
            creation_unix_ms: ctx.now_ms,
        },
    );
    Ok(json!({"ScalingConfigurationId": id}))
}

/// Changes a configuration in place; instances it creates from now on
/// get the new values, running ones keep theirs (as ESS does).
fn modify_scaling_configuration(
    ctx: &mut Ctx<'_>,
    s: &mut State,
    p: &Params,
) -> CloudResult<Value> {
    let id = p.req("ScalingConfigurationId")?.to_owned();
    let gid = s
        .scaling_configurations
        .get(&id)
        .map(|c| c.scaling_group_id.clone())
        .ok_or_else(|| CloudError::not_found("InvalidScalingConfigurationId", &id))?;
    ctx.authorize(&[group_arn(s, &gid)])?;
    if let Some(t) = p.opt("InstanceType") {
        check_instance_type(s, t)?;
    }
    if let Some(sg) = p.opt("SecurityGroupId") {
        super::ecs::security_group(s, sg)?;
    }
    if let Some(r) = p.opt("RamRoleName") {
        check_ram_role(ctx, s, r)?;
    }
    let user_data = p.opt("UserData").map(decode_user_data).transpose()?;
    let tags = tags_param(p)?;
    // Everything is checked: nothing changes unless all of it can.
    let c = s
        .scaling_configurations
        .get_mut(&id)
        .ok_or_else(|| CloudError::not_found("InvalidScalingConfigurationId", &id))?;
    if let Some(t) = p.opt("InstanceType") {
        c.instance_type = t.to_owned();
    }
    if let Some(sg) = p.opt("SecurityGroupId") {
        c.security_group_id = sg.to_owned();
    }
    if let Some(r) = p.opt("RamRoleName") {
        c.ram_role = Some(r.to_owned());
    }
    if let Some(i) = p.opt("ImageId") {
        c.image_id = i.to_owned();
    }
    if let Some(n) = p.opt("ScalingConfigurationName") {
        c.name = n.to_owned();
    }
    if let Some(ud) = user_data {
        c.user_data = ud;
    }
    if let Some(t) = tags {
        c.tags = t;
    }
    Ok(json!({}))
}

fn total(g: &ScalingGroup) -> u32 {
    g.instance_ids.len() as u32
}

/// Brings the group to `target` instances, recording one activity.
fn scale_to(
    ctx: &mut Ctx<'_>,
    s: &mut State,
    gid: &str,
    target: u32,
    cause: String,
) -> CloudResult<Option<String>> {
    let g = group(s, gid)?.clone();
    let current = total(&g);
    if target == current {
        return Ok(None);
    }
    if !g.enabled {
        return Err(CloudError::incorrect_status(
            "IncorrectScalingGroupStatus",
            format!(
                "The current status of the scaling group {gid} does not support this operation: it is not active (EnableScalingGroup first)."
            ),
        ));
    }
    let seq = s
        .scaling_activities
        .values()
        .map(|a| a.seq)
        .max()
        .unwrap_or(0)
        + 1;
    let activity_id = ctx.new_id("asa");
    let mut activity = ScalingActivity {
        id: activity_id.clone(),
        scaling_group_id: gid.to_owned(),
        status: ActivityStatus::InProgress,
        cause,
        description: String::new(),
        status_message: String::new(),
        instance_ids: Vec::new(),
        start_unix_ms: ctx.now_ms,
        end_unix_ms: None,
        seq,
    };
    if target > current {
        let conf_id = g.active_configuration_id.clone().ok_or_else(|| {
            CloudError::incorrect_status(
                "IncorrectScalingGroupStatus",
                format!("The scaling group {gid} has no active scaling configuration."),
            )
        })?;
        let conf = s
            .scaling_configurations
            .get(&conf_id)
            .cloned()
            .ok_or_else(|| CloudError::not_found("InvalidScalingConfigurationId", &conf_id))?;
        let add = target - current;
        let mut tags = conf.tags.clone();
        tags.insert("acs:autoscaling:scalingGroupId".into(), gid.to_owned());
        let req = InstanceRequest {
            instance_type: conf.instance_type.clone(),
            image_id: conf.image_id.clone(),
            vswitch_id: g.vswitch_ids[0].clone(),
            security_group_ids: vec![conf.security_group_id.clone()],
            name: format!("ESS-{}", if g.name.is_empty() { gid } else { &g.name }),
            host_name: None,
            user_data: conf.user_data.clone(),
            ram_role: conf.ram_role.clone(),
            private_ip: None,
            tags,
            scaling_group_id: Some(gid.to_owned()),
        };
        let ids = create_instances(ctx, s, &req, add, true)?;
        for lb_id in &g.load_balancer_ids {
            if let Some(lb) = s.load_balancers.get_mut(lb_id) {
                for id in &ids {
                    lb.backends.push(Backend {
                        server_id: id.clone(),
                        weight: 50,
                        health: BTreeMap::new(),
                    });
                }
            }
        }
        s.scaling_groups
            .get_mut(gid)
            .expect("exists")
            .instance_ids
            .extend(ids.iter().cloned());
        activity.description = format!("Add \"{add}\" ECS instance(s)");
        activity.instance_ids = ids;
    } else {
        // Oldest instances go first.
        let mut members: Vec<(i64, String)> = g
            .instance_ids
            .iter()
            .filter_map(|i| s.instances.get(i).map(|x| (x.creation_unix_ms, i.clone())))
            .collect();
        members.sort();
        let remove: Vec<String> = members
            .into_iter()
            .take((current - target) as usize)
            .map(|(_, i)| i)
            .collect();
        for id in &remove {
            release_instance(ctx, s, id)?;
        }
        activity.description = format!("Remove \"{}\" ECS instance(s)", remove.len());
        activity.instance_ids = remove;
        activity.status = ActivityStatus::Successful;
        activity.status_message = "\"All instances removed.\"".into();
        activity.end_unix_ms = Some(ctx.now_ms);
    }
    s.scaling_activities.insert(activity_id.clone(), activity);
    prune_activities(s);
    Ok(Some(activity_id))
}

fn prune_activities(s: &mut State) {
    let keep = s.quotas.scaling_activities_kept;
    while s.scaling_activities.len() > keep {
        let oldest = s
            .scaling_activities
            .values()
            .min_by_key(|a| a.seq)
            .map(|a| a.id.clone());
        match oldest {
            Some(id) => {
                s.scaling_activities.remove(&id);
            }
            None => break,
        }
    }
}

/// Completes InProgress activities whose instances have all come up (or
/// failed). Returns whether anything changed.
pub fn settle_activities(s: &mut State, now_ms: i64) -> bool {
    let mut changed = false;
    let statuses: BTreeMap<String, (InstanceStatus, Option<String>)> = s
        .instances
        .values()
        .map(|i| (i.id.clone(), (i.status, i.last_error.clone())))
        .collect();
    for a in s
        .scaling_activities
        .values_mut()
        .filter(|a| a.status == ActivityStatus::InProgress)
    {
        let mut running = 0;
        let mut failed = Vec::new();
        let mut pending = false;
        for id in &a.instance_ids {
            match statuses.get(id) {
                Some((InstanceStatus::Running, _)) => running += 1,
                Some((_, Some(err))) => failed.push(format!("{id}: {err}")),
                Some((InstanceStatus::Pending | InstanceStatus::Starting, _)) => pending = true,
                Some(_) | None => failed.push(format!("{id}: released before it came up")),
            }
        }
        if pending {
            continue;
        }
        a.end_unix_ms = Some(now_ms);
        if failed.is_empty() {
            a.status = ActivityStatus::Successful;
            a.status_message = "\"All instances added.\"".into();
        } else if running > 0 {
            a.status = ActivityStatus::Warning;
            a.status_message =
                format!("{running} instance(s) added; failed: {}", failed.join("; "));
        } else {
            a.status = ActivityStatus::Failed;
            a.status_message = format!("no instance came up: {}", failed.join("; "));
        }
        changed = true;
    }
    changed
}

fn modify_scaling_group(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let gid = group_id(ctx, s, p)?;
    let g = group(s, &gid)?.clone();
    let min = u32_param(p, "MinSize")?.unwrap_or(g.min_size);
    let max = u32_param(p, "MaxSize")?.unwrap_or(g.max_size);
    let desired = u32_param(p, "DesiredCapacity")?.or(g.desired_capacity);
    check_sizes(min, max, desired)?;
    if let Some(c) = p.opt("ActiveScalingConfigurationId") {
        let conf = s
            .scaling_configurations
            .get(c)
            .ok_or_else(|| CloudError::not_found("InvalidScalingConfigurationId", c))?;
        if conf.scaling_group_id != gid {
            return Err(CloudError::invalid_param(format!(
                "The scaling configuration {c} belongs to another scaling group."
            )));
        }
    }
    {
        let gm = s.scaling_groups.get_mut(&gid).expect("exists");
        gm.min_size = min;
        gm.max_size = max;
        gm.desired_capacity = desired;
        if let Some(c) = p.opt("ActiveScalingConfigurationId") {
            gm.active_configuration_id = Some(c.to_owned());
        }
    }
    if g.enabled {
        let current = total(&g);
        let target = desired.unwrap_or(current).clamp(min, max);
        if target != current {
            let cause = format!(
                "A user modifies the Total Capacity of the scaling group, changing the Total Capacity from \"{current}\" to \"{target}\"."
            );
            scale_to(ctx, s, &gid, target, cause)?;
        }
    }
    Ok(json!({}))
}

fn delete_scaling_group(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let gid = group_id(ctx, s, p)?;
    let g = group(s, &gid)?.clone();
    let force = p.opt_bool("ForceDelete")?.unwrap_or(false);
    if !g.instance_ids.is_empty() && !force {
        return Err(CloudError::new(
            "DependencyViolation.ScalingInstance",
            format!(
                "The scaling group {gid} still has {} instance(s); use ForceDelete=true to release them.",
                g.instance_ids.len()
            ),
            400,
        ));
    }
    for id in &g.instance_ids {
        release_instance(ctx, s, id)?;
    }
    s.scaling_groups.remove(&gid);
    s.scaling_configurations
        .retain(|_, c| c.scaling_group_id != gid);
    s.scaling_rules.retain(|_, r| r.scaling_group_id != gid);
    Ok(json!({}))
}

fn group_json(s: &State, g: &ScalingGroup) -> Value {
    json!({
        "ScalingGroupId": g.id, "ScalingGroupName": g.name, "MinSize": g.min_size, "MaxSize": g.max_size,
        "DesiredCapacity": g.desired_capacity, "VSwitchIds": {"VSwitchId": g.vswitch_ids},
        "VSwitchId": g.vswitch_ids.first(), "LoadBalancerIds": {"LoadBalancerId": g.load_balancer_ids},
        "ActiveScalingConfigurationId": g.active_configuration_id.clone().unwrap_or_default(),
        "LifecycleState": if g.enabled { "Active" } else { "Inactive" },
        "TotalCapacity": total(g), "ActiveCapacity": g.instance_ids.iter().filter(|i| s.instances.get(*i).is_some_and(|x| x.status == InstanceStatus::Running)).count(),
        "CreationTime": iso8601(g.creation_unix_ms), "RegionId": s.region,
    })
}

fn describe_scaling_groups(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let ids = p.list("ScalingGroupIds", "ScalingGroupId")?;
    let res = if ids.is_empty() {
        vec![arn(s, "ess", "scalinggroup/*")]
    } else {
        ids.iter().map(|i| group_arn(s, i)).collect()
    };
    ctx.authorize(&res)?;
    let items: Vec<Value> = s
        .scaling_groups
        .values()
        .filter(|g| ids.is_empty() || ids.contains(&g.id))
        .filter(|g| p.opt("ScalingGroupName").is_none_or(|n| n == g.name))
        .map(|g| group_json(s, g))
        .collect();
    let n = items.len();
    let mut out = nested("ScalingGroups", "ScalingGroup", items);
    out["TotalCount"] = json!(n);
    Ok(out)
}

fn describe_scaling_configurations(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let gid = group_id(ctx, s, p)?;
    let items = s
        .scaling_configurations
        .values()
        .filter(|c| c.scaling_group_id == gid)
        .map(|c| {
            json!({"ScalingConfigurationId": c.id, "ScalingConfigurationName": c.name, "ScalingGroupId": c.scaling_group_id,
                   "InstanceType": c.instance_type, "ImageId": c.image_id, "SecurityGroupId": c.security_group_id,
                   "UserData": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, c.user_data.as_bytes()),
                   "RamRoleName": c.ram_role.clone().unwrap_or_default(), "Tags": c.tags,
                   "LifecycleState": if s.scaling_groups.get(&gid).and_then(|g| g.active_configuration_id.as_ref()) == Some(&c.id) { "Active" } else { "Inactive" },
                   "CreationTime": iso8601(c.creation_unix_ms)})
        })
        .collect();
    Ok(nested(
        "ScalingConfigurations",
        "ScalingConfiguration",
        items,
    ))
}

fn enable_scaling_group(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let gid = group_id(ctx, s, p)?;
    let conf = match p.opt("ActiveScalingConfigurationId") {
        Some(c) => c.to_owned(),
        None => s
            .scaling_configurations
            .values()
            .filter(|c| c.scaling_group_id == gid)
            .max_by_key(|c| c.creation_unix_ms)
            .map(|c| c.id.clone())
            .ok_or_else(|| {
                CloudError::incorrect_status(
                    "IncorrectScalingGroupStatus",
                    format!("The scaling group {gid} has no scaling configuration."),
                )
            })?,
    };
    let c = s
        .scaling_configurations
        .get(&conf)
        .ok_or_else(|| CloudError::not_found("InvalidScalingConfigurationId", &conf))?;
    if c.scaling_group_id != gid {
        return Err(CloudError::invalid_param(format!(
            "The scaling configuration {conf} belongs to another scaling group."
        )));
    }
    let g = s.scaling_groups.get_mut(&gid).expect("exists");
    g.active_configuration_id = Some(conf);
    g.enabled = true;
    let g = g.clone();
    let current = total(&g);
    let target = g
        .desired_capacity
        .unwrap_or(g.min_size)
        .clamp(g.min_size, g.max_size)
        .max(current.min(g.max_size));
    if target != current {
        let cause = format!(
            "The current capacity of the scaling group is less than the minimum or desired capacity, changing the Total Capacity from \"{current}\" to \"{target}\"."
        );
        scale_to(ctx, s, &gid, target, cause)?;
    }
    Ok(json!({}))
}

fn disable_scaling_group(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let gid = group_id(ctx, s, p)?;
    s.scaling_groups.get_mut(&gid).expect("exists").enabled = false;
    Ok(json!({}))
}

fn create_scaling_rule(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let gid = group_id(ctx, s, p)?;
    let adjustment_type = match p.req("AdjustmentType")? {
        "QuantityChangeInCapacity" => AdjustmentType::QuantityChangeInCapacity,
        "TotalCapacity" => AdjustmentType::TotalCapacity,
        "PercentChangeInCapacity" => AdjustmentType::PercentChangeInCapacity,
        other => {
            return Err(CloudError::invalid_param(format!(
                "The AdjustmentType {other:?} is not QuantityChangeInCapacity, TotalCapacity or PercentChangeInCapacity."
            )));
        }
    };
    let value = p
        .opt_i64("AdjustmentValue")?
        .ok_or_else(|| CloudError::missing_param("AdjustmentValue"))?;
    if adjustment_type == AdjustmentType::TotalCapacity && value < 0 {
        return Err(CloudError::invalid_param(
            "A TotalCapacity AdjustmentValue must not be negative.",
        ));
    }
    let id = ctx.new_id("asr");
    let ari = format!("ari:acs:ess:{}:{}:scalingrule/{id}", s.region, s.account_id);
    s.scaling_rules.insert(
        id.clone(),
        ScalingRule {
            id: id.clone(),
            ari: ari.clone(),
            scaling_group_id: gid,
            name: p.opt("ScalingRuleName").unwrap_or("").to_owned(),
            adjustment_type,
            adjustment_value: value,
        },
    );
    Ok(json!({"ScalingRuleId": id, "ScalingRuleAri": ari}))
}

fn describe_scaling_rules(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let gid = group_id(ctx, s, p)?;
    let items = s
        .scaling_rules
        .values()
        .filter(|r| r.scaling_group_id == gid)
        .map(|r| {
            json!({"ScalingRuleId": r.id, "ScalingRuleAri": r.ari, "ScalingRuleName": r.name, "ScalingGroupId": r.scaling_group_id,
                   "AdjustmentType": format!("{:?}", r.adjustment_type), "AdjustmentValue": r.adjustment_value})
        })
        .collect();
    Ok(nested("ScalingRules", "ScalingRule", items))
}

/// The capacity a rule asks for, clamped to the group's bounds.
pub fn rule_target(rule: &ScalingRule, current: u32, min: u32, max: u32) -> u32 {
    let cur = i64::from(current);
    let raw = match rule.adjustment_type {
        AdjustmentType::QuantityChangeInCapacity => cur + rule.adjustment_value,
        AdjustmentType::TotalCapacity => rule.adjustment_value,
        AdjustmentType::PercentChangeInCapacity => {
            let delta = cur * rule.adjustment_value;
            // Round away from zero so a percentage never rounds to no change.
            cur + if delta >= 0 {
                (delta + 99) / 100
            } else {
                -((-delta + 99) / 100)
            }
        }
    };
    raw.clamp(i64::from(min), i64::from(max)) as u32
}

fn execute_scaling_rule(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let ari = p.req("ScalingRuleAri")?.to_owned();
    let rule = s
        .scaling_rules
        .values()
        .find(|r| r.ari == ari)
        .cloned()
        .ok_or_else(|| CloudError::not_found("InvalidScalingRuleAri", &ari))?;
    ctx.authorize(&[group_arn(s, &rule.scaling_group_id)])?;
    let g = group(s, &rule.scaling_group_id)?.clone();
    let current = total(&g);
    let target = rule_target(&rule, current, g.min_size, g.max_size);
    if target == current {
        return Err(CloudError::new(
            "ScalingActivity.NoEffect",
            format!(
                "Executing scaling rule {} changes nothing: the group has {current} instance(s) within MinSize {} and MaxSize {}.",
                rule.id, g.min_size, g.max_size
            ),
            400,
        ));
    }
    let cause = format!(
        "A user requests to execute scaling rule \"{}\", changing the Total Capacity from \"{current}\" to \"{target}\".",
        rule.id
    );
    let activity = scale_to(ctx, s, &g.id, target, cause)?;
    s.scaling_groups
        .get_mut(&g.id)
        .expect("exists")
        .desired_capacity = g.desired_capacity.map(|_| target);
    Ok(json!({"ScalingActivityId": activity}))
}

fn remove_instances(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let gid = group_id(ctx, s, p)?;
    let ids = p.list("InstanceIds", "InstanceId")?;
    if ids.is_empty() {
        return Err(CloudError::missing_param("InstanceId.1"));
    }
    let decrease = p.opt_bool("DecreaseDesiredCapacity")?.unwrap_or(true);
    let g = group(s, &gid)?.clone();
    for id in &ids {
        if !g.instance_ids.contains(id) {
            return Err(CloudError::new(
                "InvalidInstanceId.NotInScalingGroup",
                format!("The instance {id} is not in scaling group {gid}."),
                400,
            ));
        }
    }
    let current = total(&g);
    let after = current - ids.len() as u32;
    if after < g.min_size {
        return Err(CloudError::new(
            "InvalidParameter.Conflict",
            format!(
                "Removing {} instance(s) would leave {after}, less than the MinSize {}.",
                ids.len(),
                g.min_size
            ),
            400,
        ));
    }
    for id in &ids {
        release_instance(ctx, s, id)?;
    }
    let seq = s
        .scaling_activities
        .values()
        .map(|a| a.seq)
        .max()
        .unwrap_or(0)
        + 1;
    let aid = ctx.new_id("asa");
    s.scaling_activities.insert(
        aid.clone(),
        ScalingActivity {
            id: aid.clone(),
            scaling_group_id: gid.clone(),
            status: ActivityStatus::Successful,
            cause: format!("A user removes instance(s) from the scaling group, changing the Total Capacity from \"{current}\" to \"{after}\"."),
            description: format!("Remove \"{}\" ECS instance(s)", ids.len()),
            status_message: "\"All instances removed.\"".into(),
            instance_ids: ids,
            start_unix_ms: ctx.now_ms,
            end_unix_ms: Some(ctx.now_ms),
            seq,
        },
    );
    // By default the group shrinks with its instances; otherwise it
    // replaces them to keep its desired capacity.
    match (g.desired_capacity, decrease) {
        (Some(d), true) => {
            s.scaling_groups
                .get_mut(&gid)
                .expect("exists")
                .desired_capacity = Some(d.saturating_sub(current - after).max(g.min_size));
        }
        (Some(d), false) if d > after => {
            scale_to(
                ctx,
                s,
                &gid,
                d,
                format!(
                    "The current capacity of the scaling group is less than the desired capacity, changing the Total Capacity from \"{after}\" to \"{d}\"."
                ),
            )?;
        }
        _ => {}
    }
    prune_activities(s);
    Ok(json!({"ScalingActivityId": aid}))
}

fn describe_scaling_instances(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let gid = group_id(ctx, s, p)?;
    let g = group(s, &gid)?;
    let items: Vec<Value> = g
        .instance_ids
        .iter()
        .filter_map(|i| s.instances.get(i))
        .map(|i| {
            json!({"InstanceId": i.id, "ScalingGroupId": gid, "ScalingConfigurationId": g.active_configuration_id,
                   "HealthStatus": if i.status == InstanceStatus::Running { "Healthy" } else { "Unhealthy" },
                   "LifecycleState": if i.status == InstanceStatus::Running { "InService" } else { "Pending" },
                   "CreationType": "AutoCreated", "CreationTime": iso8601(i.creation_unix_ms)})
        })
        .collect();
    let n = items.len();
    let mut out = nested("ScalingInstances", "ScalingInstance", items);
    out["TotalCount"] = json!(n);
    Ok(out)
}

fn describe_scaling_activities(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let gid = group_id(ctx, s, p)?;
    let mut acts: Vec<&ScalingActivity> = s
        .scaling_activities
        .values()
        .filter(|a| a.scaling_group_id == gid)
        .filter(|a| p.opt("StatusCode").is_none_or(|c| c == a.status.as_str()))
        .collect();
    acts.sort_by_key(|a| std::cmp::Reverse(a.seq));
    let items: Vec<Value> = acts
        .into_iter()
        .map(|a| {
            json!({"ScalingActivityId": a.id, "ScalingGroupId": a.scaling_group_id, "StatusCode": a.status.as_str(),
                   "Cause": a.cause, "Description": a.description, "StatusMessage": a.status_message,
                   "Progress": if a.status == ActivityStatus::InProgress { 0 } else { 100 },
                   "InstanceIds": a.instance_ids,
                   "StartTime": iso8601(a.start_unix_ms), "EndTime": a.end_unix_ms.map(iso8601).unwrap_or_default()})
        })
        .collect();
    let n = items.len();
    let mut out = nested("ScalingActivities", "ScalingActivity", items);
    out["TotalCount"] = json!(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_target_table() {
        let rule = |t, v| ScalingRule {
            id: "asr-1".into(),
            ari: String::new(),
            scaling_group_id: String::new(),
            name: String::new(),
            adjustment_type: t,
            adjustment_value: v,
        };
        let cases = [
            (
                rule(AdjustmentType::QuantityChangeInCapacity, 2),
                1,
                0,
                10,
                3,
            ),
            (
                rule(AdjustmentType::QuantityChangeInCapacity, 20),
                1,
                0,
                10,
                10,
            ),
            (
                rule(AdjustmentType::QuantityChangeInCapacity, -5),
                3,
                1,
                10,
                1,
            ),
            (rule(AdjustmentType::TotalCapacity, 4), 1, 0, 10, 4),
            (
                rule(AdjustmentType::PercentChangeInCapacity, 50),
                3,
                0,
                10,
                5,
            ),
            (
                rule(AdjustmentType::PercentChangeInCapacity, -50),
                3,
                0,
                10,
                1,
            ),
        ];
        for (i, (r, cur, min, max, want)) in cases.into_iter().enumerate() {
            assert_eq!(rule_target(&r, cur, min, max), want, "case {i}");
        }
    }
}
