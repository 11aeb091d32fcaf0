//! Every failpoint action, through the public macros and registry. Each test
//! uses its own point names (the registry is process-wide).

use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::clock_global::set_process_clock;
use ackemu_base::failpoint::{self, FailpointError};
use ackemu_base::tasks::{self, Tasks};

async fn hit_a() -> Result<(), FailpointError> {
    ackemu_base::failpoint!("it/a")
}
async fn hit_hang() -> Result<(), FailpointError> {
    ackemu_base::failpoint!("it/hang")
}
async fn hit_prob() -> Result<(), FailpointError> {
    ackemu_base::failpoint!("it/prob")
}
fn hit_sync() -> Result<(), FailpointError> {
    ackemu_base::failpoint_sync!("it/sync")
}
async fn hit_panic() -> Result<(), FailpointError> {
    ackemu_base::failpoint!("it/panic")
}

#[tokio::test]
async fn off_and_return() {
    assert_eq!(hit_a().await, Ok(()));
    failpoint::set("it/a", "return(eio)").unwrap();
    let e = hit_a().await.unwrap_err();
    assert_eq!(e.to_string(), "failpoint it/a: eio");
    failpoint::set("it/a", "off").unwrap();
    assert_eq!(hit_a().await, Ok(()));
    // The site is listed even though nothing configured it through `set`
    // first: sites register at link time.
    assert!(failpoint::list().iter().any(|s| s.name == "it/panic"));
}

#[tokio::test]
async fn hang_is_released_by_clear() {
    let tasks = Tasks::new(Clock::real());
    failpoint::set("it/hang", "hang").unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    tasks.spawn("it/hanging-caller", async move {
        let r = hit_hang().await;
        tx.send(r).await.ok();
    });
    // Bounded wait until the caller is parked.
    loop {
        let st = failpoint::list()
            .into_iter()
            .find(|s| s.name == "it/hang")
            .unwrap();
        if st.parked == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let row = tasks::dump()
        .into_iter()
        .find(|t| t.name == "it/hanging-caller")
        .unwrap();
    assert_eq!(row.waiting_on.as_deref(), Some("failpoint it/hang (hang)"));
    assert!(rx.try_recv().is_err(), "returned while hung");
    assert!(failpoint::clear("it/hang"));
    assert_eq!(rx.recv().await.unwrap(), Ok(()));
}

#[tokio::test]
async fn changing_a_hang_to_return_releases_callers() {
    let tasks = Tasks::new(Clock::real());
    failpoint::set("it/hang2", "hang").unwrap();
    async fn hit() -> Result<(), FailpointError> {
        ackemu_base::failpoint!("it/hang2")
    }
    let h = tasks.spawn("it/hang2-caller", hit());
    loop {
        if failpoint::list()
            .into_iter()
            .any(|s| s.name == "it/hang2" && s.parked == 1)
        {
            break;
        }
        tokio::task::yield_now().await;
    }
    failpoint::set("it/hang2", "return").unwrap();
    assert_eq!(
        h.await.unwrap(),
        Ok(()),
        "a parked caller is released, not failed retroactively"
    );
    assert!(hit().await.is_err());
    failpoint::clear("it/hang2");
}

#[test]
fn seeded_probability_is_reproducible() {
    let run = || {
        failpoint::set_seed(42);
        failpoint::set("it/prob", "25%return").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let pattern: Vec<bool> = (0..400).map(|_| rt.block_on(hit_prob()).is_err()).collect();
        failpoint::clear("it/prob");
        pattern
    };
    let a = run();
    let b = run();
    assert_eq!(a, b, "same seed, same sequence");
    let fired = a.iter().filter(|f| **f).count();
    // 25% of 400 with a fixed seed: a deterministic count near 100.
    assert!((60..=140).contains(&fired), "fired {fired} of 400");
    assert!(fired > 0 && fired < 400);
}

#[test]
fn next_n_then_off_and_blocking_variant() {
    failpoint::set("it/sync", "3*return(x)").unwrap();
    let results: Vec<bool> = (0..5).map(|_| hit_sync().is_err()).collect();
    assert_eq!(results, [true, true, true, false, false]);
    let st = failpoint::list()
        .into_iter()
        .find(|s| s.name == "it/sync")
        .unwrap();
    assert_eq!(st.action, "off");
}

#[test]
fn blocking_hang_is_released_by_clear() {
    failpoint::set("it/sync-hang", "hang").unwrap();
    fn hit() -> Result<(), FailpointError> {
        ackemu_base::failpoint_sync!("it/sync-hang")
    }
    let tasks = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { Tasks::new(Clock::real()) })
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let th = tasks.spawn_thread("it/blocking-caller", move || {
        tx.send(hit()).ok();
    });
    loop {
        if failpoint::list()
            .into_iter()
            .any(|s| s.name == "it/sync-hang" && s.parked == 1)
        {
            break;
        }
        std::thread::yield_now();
    }
    assert!(rx.try_recv().is_err());
    failpoint::clear("it/sync-hang");
    assert_eq!(rx.recv().unwrap(), Ok(()));
    th.join().unwrap();
}

#[tokio::test(start_paused = true)]
async fn delay_waits_in_cluster_time() {
    // At 60x, a 1 minute delay is one real (paused) second.
    let clock = Clock::new(ackemu_base::clock::ClockConfig {
        time_scale: 60.0,
        epoch_unix_ms: 0,
        offset_ms: 0,
    });
    set_process_clock(clock.clone());
    async fn hit() -> Result<(), FailpointError> {
        ackemu_base::failpoint!("it/delay")
    }
    failpoint::set("it/delay", "delay(1m)").unwrap();
    let real = Clock::real();
    let start = real.now();
    let c0 = clock.now();
    hit().await.unwrap();
    assert_eq!(real.now() - start, Duration::from_secs(1));
    assert!(clock.now() - c0 >= Duration::from_secs(60));
    failpoint::clear("it/delay");
    set_process_clock(Clock::real());
}

#[tokio::test]
async fn panic_action_panics_with_the_message() {
    let tasks = Tasks::new(Clock::real());
    failpoint::set("it/panic", "panic(boom)").unwrap();
    let err = tasks.spawn("it/panicker", hit_panic()).await.unwrap_err();
    failpoint::clear("it/panic");
    let msg = err.into_panic();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(msg, "failpoint it/panic: boom");
}

#[tokio::test]
async fn a_cancelled_hang_is_no_longer_counted_as_parked() {
    async fn hit() -> Result<(), FailpointError> {
        ackemu_base::failpoint!("it/hang-cancel")
    }
    failpoint::set("it/hang-cancel", "hang").unwrap();
    let (clock, ctl) = Clock::manual(0);
    let c = clock.clone();
    let tasks = Tasks::new(Clock::real());
    let h = tasks.spawn("it/hang-with-timeout", async move {
        c.timeout(Duration::from_secs(1), hit()).await
    });
    loop {
        if failpoint::list()
            .into_iter()
            .any(|s| s.name == "it/hang-cancel" && s.parked == 1)
        {
            break;
        }
        tokio::task::yield_now().await;
    }
    ctl.advance(Duration::from_secs(1));
    assert!(h.await.unwrap().is_err(), "the timeout fired");
    let st = failpoint::list()
        .into_iter()
        .find(|s| s.name == "it/hang-cancel")
        .unwrap();
    assert_eq!(st.parked, 0);
    failpoint::clear("it/hang-cancel");
}
