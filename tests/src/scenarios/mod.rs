//! The scenarios of SCENARIOS.md that the runner reproduces so far.

pub mod s01;
pub mod s02;
pub mod s03;
pub mod s04;
pub mod s05;
pub mod s06;
pub mod s07;
pub mod s08;
pub mod s09;
pub mod s10;
pub mod s11;
pub mod s12;
pub mod s13;
pub mod s14;
pub mod util;

use crate::scenario::Scenario;

/// Every scenario the runner knows, in SCENARIOS.md order.
pub const ALL: &[Scenario] = &[
    Scenario {
        id: s01::ID,
        title: s01::TITLE,
        nodes: s01::NODES as u32,
        store_quota_bytes: 0,
        up_args: &[],
    },
    Scenario {
        id: s02::ID,
        title: s02::TITLE,
        nodes: s02::NODES as u32,
        store_quota_bytes: 0,
        up_args: &[],
    },
    Scenario {
        id: s03::ID,
        title: s03::TITLE,
        nodes: 2,
        store_quota_bytes: 0,
        up_args: &[],
    },
    Scenario {
        id: s04::ID,
        title: s04::TITLE,
        nodes: 2,
        store_quota_bytes: 0,
        up_args: &[],
    },
    Scenario {
        id: s05::ID,
        title: s05::TITLE,
        nodes: 1,
        store_quota_bytes: 0,
        up_args: &[],
    },
    Scenario {
        id: s06::ID,
        title: s06::TITLE,
        nodes: s06::NODES as u32,
        store_quota_bytes: 0,
        up_args: &[],
    },
    Scenario {
        id: s07::ID,
        title: s07::TITLE,
        nodes: 2,
        store_quota_bytes: 0,
        up_args: s07::UP_ARGS,
    },
    Scenario {
        id: s08::ID,
        title: s08::TITLE,
        nodes: s08::NODES as u32,
        store_quota_bytes: 0,
        up_args: s08::UP_ARGS,
    },
    Scenario {
        id: s09::ID,
        title: s09::TITLE,
        nodes: s09::NODES as u32,
        store_quota_bytes: 0,
        up_args: s09::UP_ARGS,
    },
    Scenario {
        id: s10::ID,
        title: s10::TITLE,
        nodes: s10::NODES as u32,
        store_quota_bytes: 0,
        up_args: &[],
    },
    Scenario {
        id: s11::ID,
        title: s11::TITLE,
        nodes: s11::NODES as u32,
        store_quota_bytes: 0,
        up_args: &[],
    },
    Scenario {
        id: s12::ID,
        title: s12::TITLE,
        nodes: 2,
        store_quota_bytes: 0,
        up_args: &[],
    },
    Scenario {
        id: s13::ID,
        title: s13::TITLE,
        nodes: 0,
        store_quota_bytes: 0,
        up_args: &[],
    },
    Scenario {
        id: s14::ID,
        title: s14::TITLE,
        nodes: 0,
        store_quota_bytes: s14::QUOTA_BYTES,
        up_args: &[],
    },
];
