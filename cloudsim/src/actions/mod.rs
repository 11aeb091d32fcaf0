//! One module per product: each exports `ACTIONS`, the table of OpenAPI
//! actions it implements. A handler parses its parameters, authorizes
//! through `ctx.authorize` with the resources it touches, then reads or
//! mutates the state copy it was given.

use crate::cloud::{ActionDef, Product};
use crate::error::{CloudError, CloudResult};
use crate::model::{Instance, State};

pub mod ecs;
pub mod ess;
pub mod ram;
pub mod registry;
pub mod slb;
pub mod sts;
pub mod vpc;

pub fn table(p: Product) -> &'static [ActionDef] {
    match p {
        Product::Ecs => ecs::ACTIONS,
        Product::Vpc => vpc::ACTIONS,
        Product::Slb => slb::ACTIONS,
        Product::Ess => ess::ACTIONS,
        Product::Ram => ram::ACTIONS,
        Product::Sts => sts::ACTIONS,
        Product::Registry => registry::ACTIONS,
    }
}

/// `acs:<svc>:<region>:<account>:<relative>`.
pub fn arn(state: &State, svc: &str, relative: &str) -> String {
    crate::ram::arn(svc, &state.region, &state.account_id, relative)
}

/// RAM ARNs have no region.
pub fn ram_arn(state: &State, relative: &str) -> String {
    crate::ram::arn("ram", "", &state.account_id, relative)
}

pub fn instance<'a>(state: &'a State, id: &str) -> CloudResult<&'a Instance> {
    state
        .instances
        .get(id)
        .ok_or_else(|| CloudError::not_found("InvalidInstanceId", id))
}

pub fn instance_mut<'a>(state: &'a mut State, id: &str) -> CloudResult<&'a mut Instance> {
    state
        .instances
        .get_mut(id)
        .ok_or_else(|| CloudError::not_found("InvalidInstanceId", id))
}

pub fn incorrect_instance_status(id: &str, status: &str, wanted: &str) -> CloudError {
    CloudError::incorrect_status(
        "IncorrectInstanceStatus",
        format!(
            "The current status of the resource does not support this operation: instance {id} is {status}, expected {wanted}."
        ),
    )
}

/// Checks a name parameter: 2–128 characters, starting with a letter.
pub fn check_name(param: &str, name: &str) -> CloudResult<()> {
    let ok = (2..=128).contains(&name.chars().count())
        && name.chars().next().is_some_and(|c| c.is_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(CloudError::new(
            format!("Invalid{param}.Malformed"),
            format!(
                "The specified {param} {name:?} is not valid: 2 to 128 characters starting with a letter."
            ),
            400,
        ))
    }
}
