//! The cloud's request pipeline: action lookup → authentication (AccessKey
//! or STS token) → throttling → failpoint `cloud/<product>/<Action>` →
//! handler, which must authorize through RAM before touching state →
//! atomic commit (mutate a copy, persist, publish) → audit record.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::failpoint::{self, Failpoint};
use ackemu_base::tasks::Tasks;
use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::actions;
use crate::auth::{self, SignedRequest};
use crate::error::{CloudError, CloudResult};
use crate::model::State;
use crate::params::Params;
use crate::ram::{self, Decision, PolicyDocument};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Product {
    Ecs,
    Vpc,
    Slb,
    Ess,
    Ram,
    Sts,
    Registry,
}

impl Product {
    pub const ALL: [Product; 7] = [
        Product::Ecs,
        Product::Vpc,
        Product::Slb,
        Product::Ess,
        Product::Ram,
        Product::Sts,
        Product::Registry,
    ];

    /// Lowercase name (CLI, failpoints, gRPC routing).
    pub fn name(self) -> &'static str {
        match self {
            Product::Ecs => "ecs",
            Product::Vpc => "vpc",
            Product::Slb => "slb",
            Product::Ess => "ess",
            Product::Ram => "ram",
            Product::Sts => "sts",
            Product::Registry => "registry",
        }
    }

    /// The RAM service code in actions and ARNs (`cr` for the registry).
    pub fn ram_code(self) -> &'static str {
        match self {
            Product::Registry => "cr",
            p => p.name(),
        }
    }

    pub fn parse(s: &str) -> Option<Product> {
        Product::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s) || p.ram_code().eq_ignore_ascii_case(s))
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Principal {
    /// The account itself (root AccessKey): not subject to RAM policies.
    Root,
    User(String),
    AssumedRole {
        role: String,
        session: String,
    },
    /// cloudsim's own internal callers (metadata service, lifecycle).
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Caller {
    pub principal: Principal,
    pub access_key_id: String,
}

impl Caller {
    pub fn system() -> Caller {
        Caller {
            principal: Principal::System,
            access_key_id: String::new(),
        }
    }

    /// ARN-like identity for the audit trail.
    pub fn identity(&self, account: &str) -> String {
        match &self.principal {
            Principal::Root => format!("acs:ram::{account}:root"),
            Principal::User(u) => format!("acs:ram::{account}:user/{u}"),
            Principal::AssumedRole { role, session } => {
                format!("acs:ram::{account}:assumed-role/{role}/{session}")
            }
            Principal::System => "system".to_owned(),
        }
    }
}

/// Work the instance lifecycle does after a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Boot(String),
    Stop(String),
    Delete(String),
}

/// Per-call context handed to handlers.
pub struct Ctx<'a> {
    pub caller: &'a Caller,
    pub product: Product,
    pub action: &'static str,
    pub now_ms: i64,
    pub request_id: String,
    pub effects: Vec<Effect>,
    pub rng: &'a mut StdRng,
    policies: Vec<(String, PolicyDocument)>,
    authorized: bool,
    pub deny_detail: Option<String>,
    /// The packet fabric's counters and drop log, when the data plane runs.
    pub fabric: Option<crate::dataplane::fabric::Fabric>,
    /// The hypervisor backend, when one is registered.
    pub hypervisor: Option<Arc<dyn crate::hypervisor::HypervisorBackend>>,
}

impl Ctx<'_> {
    /// RAM authorization of this call's action on `resources`; every handler
    /// calls it before reading or changing state.
    pub fn authorize(&mut self, resources: &[String]) -> CloudResult<()> {
        self.authorize_action(
            &format!("{}:{}", self.product.ram_code(), self.action),
            resources,
        )
    }

    /// Authorization of another action (e.g. `ram:PassRole`).
    pub fn authorize_action(&mut self, action: &str, resources: &[String]) -> CloudResult<()> {
        if matches!(self.caller.principal, Principal::Root | Principal::System) {
            self.authorized = true;
            return Ok(());
        }
        let d = ram::evaluate(
            self.policies.iter().map(|(n, d)| (n.as_str(), d)),
            action,
            resources,
        );
        match d {
            Decision::Allow => {
                self.authorized = true;
                Ok(())
            }
            Decision::ImplicitDeny => {
                self.deny_detail = Some(format!("no policy allows {action} on {resources:?}"));
                Err(CloudError::forbidden_ram())
            }
            Decision::ExplicitDeny { policy, statement } => {
                self.deny_detail = Some(format!(
                    "{action} on {resources:?} denied by policy {policy} statement {statement}"
                ));
                Err(CloudError::forbidden_ram())
            }
        }
    }

    /// For actions every authenticated caller may use (GetCallerIdentity).
    pub fn mark_public(&mut self) {
        self.authorized = true;
    }

    /// A new resource id `<prefix>-<20 random lowercase alphanumerics>`.
    pub fn new_id(&mut self, prefix: &str) -> String {
        new_id(self.rng, prefix)
    }
}

pub fn new_id(rng: &mut StdRng, prefix: &str) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let tail: String = (0..20)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("{prefix}-{tail}")
}

pub type ReadFn = fn(&mut Ctx<'_>, &State, &Params) -> CloudResult<Value>;
pub type WriteFn = fn(&mut Ctx<'_>, &mut State, &Params) -> CloudResult<Value>;

#[derive(Clone, Copy)]
pub enum Handler {
    Read(ReadFn),
    Write(WriteFn),
}

#[derive(Clone, Copy)]
pub struct ActionDef {
    pub name: &'static str,
    pub handler: Handler,
}

/// The outcome of one API call.
#[derive(Debug)]
pub struct Invocation {
    pub request_id: String,
    pub result: CloudResult<Value>,
}

/// One call of the audit trail.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub time_unix_ms: i64,
    pub request_id: String,
    pub caller: String,
    pub access_key_id: String,
    pub product: String,
    pub action: String,
    pub params: BTreeMap<String, String>,
    pub success: bool,
    pub error_code: String,
    pub error_message: String,
    /// Why RAM refused, when it did.
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// Sustained calls per second (cluster time) per AccessKey; 0 disables.
    pub throttle_qps: f64,
    pub throttle_burst: f64,
    /// Audit records kept in memory for queries.
    pub audit_capacity: usize,
    /// Cluster time an instance spends in Starting before the backend boots it.
    pub instance_start_delay: Duration,
    /// Lifecycle queue capacity.
    pub effect_queue: usize,
    /// STS default and maximum session durations.
    pub sts_default_duration: Duration,
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            throttle_qps: 200.0,
            throttle_burst: 400.0,
            audit_capacity: 10_000,
            instance_start_delay: Duration::from_secs(2),
            effect_queue: 1024,
            sts_default_duration: Duration::from_secs(3600),
        }
    }
}

struct Bucket {
    tokens: f64,
    last_ms: u128,
}

struct Inner {
    state: RwLock<Arc<State>>,
    write: tokio::sync::Mutex<()>,
    store: Store,
    clock: Clock,
    tasks: Tasks,
    config: CloudConfig,
    audit: Mutex<(u64, VecDeque<AuditRecord>)>,
    buckets: Mutex<HashMap<String, Bucket>>,
    failpoints: HashMap<(Product, &'static str), Arc<Failpoint>>,
    rng: Mutex<StdRng>,
    effects: mpsc::Sender<Effect>,
    /// The committed revision, for watchers (the SLB data plane).
    revision: tokio::sync::watch::Sender<u64>,
    /// The packet fabric, when the data plane runs.
    fabric: std::sync::OnceLock<crate::dataplane::fabric::Fabric>,
    /// The hypervisor, for what only it knows (instances' console output).
    hypervisor: std::sync::OnceLock<Arc<dyn crate::hypervisor::HypervisorBackend>>,
}

/// The cloud: shared by the gRPC services, the HTTP endpoints and the
/// instance lifecycle.
#[derive(Clone)]
pub struct Cloud {
    inner: Arc<Inner>,
}

/// What `Cloud::open` hands back besides the cloud: the lifecycle's queue.
pub struct EffectReceiver(pub mpsc::Receiver<Effect>);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Cloud {
    /// Opens the cloud on `store`, creating a fresh account if the store is
    /// empty (`init` is called to populate it, e.g. with the root key).
    pub fn open(
        store: Store,
        clock: Clock,
        tasks: Tasks,
        config: CloudConfig,
        init: impl FnOnce(&mut State, &mut StdRng),
    ) -> Result<(Cloud, EffectReceiver), OpenError> {
        let mut rng = StdRng::from_os_rng();
        let state = match store.load()? {
            Some(s) => s,
            None => {
                let key: [u8; 32] = rng.random();
                let account: u64 = rng.random_range(1_000_000_000_000_000..9_999_999_999_999_999);
                let mut s = State::new(
                    account.to_string(),
                    "cn-hangzhou".into(),
                    hex::encode(key),
                    Default::default(),
                    clock.wall_unix_ms(),
                );
                init(&mut s, &mut rng);
                store.save(&s)?;
                s
            }
        };
        let mut failpoints = HashMap::new();
        for p in Product::ALL {
            for def in actions::table(p) {
                failpoints.insert(
                    (p, def.name),
                    failpoint::register(&format!("cloud/{}/{}", p.name(), def.name)),
                );
            }
        }
        let mut audit = VecDeque::new();
        let mut seq = 0;
        for line in store.load_audit(config.audit_capacity)? {
            if let Ok(r) = serde_json::from_str::<AuditRecord>(&line) {
                seq = seq.max(r.seq);
                audit.push_back(r);
            }
        }
        let (tx, rx) = mpsc::channel(config.effect_queue.max(1));
        let (revision, _) = tokio::sync::watch::channel(state.revision);
        let cloud = Cloud {
            inner: Arc::new(Inner {
                state: RwLock::new(Arc::new(state)),
                write: tokio::sync::Mutex::new(()),
                store,
                clock,
                tasks,
                config,
                audit: Mutex::new((seq, audit)),
                buckets: Mutex::new(HashMap::new()),
                failpoints,
                rng: Mutex::new(rng),
                effects: tx,
                revision,
                fabric: std::sync::OnceLock::new(),
                hypervisor: std::sync::OnceLock::new(),
            }),
        };
        Ok((cloud, EffectReceiver(rx)))
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub fn tasks(&self) -> &Tasks {
        &self.inner.tasks
    }

    pub fn config(&self) -> &CloudConfig {
        &self.inner.config
    }

    /// Notified with the revision after every commit.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.revision.subscribe()
    }

    /// Registers the running packet fabric (once).
    pub fn set_fabric(&self, f: crate::dataplane::fabric::Fabric) {
        let _ = self.inner.fabric.set(f);
    }

    pub fn fabric(&self) -> Option<&crate::dataplane::fabric::Fabric> {
        self.inner.fabric.get()
    }

    /// Registers the hypervisor backend (once).
    pub fn set_hypervisor(&self, h: Arc<dyn crate::hypervisor::HypervisorBackend>) {
        let _ = self.inner.hypervisor.set(h);
    }

    /// The current committed state.
    pub fn snapshot(&self) -> Arc<State> {
        self.inner.state.read().clone()
    }

    fn now_ms(&self) -> i64 {
        self.inner.clock.wall_unix_ms()
    }

    /// Resolves who signed `req` (AccessKey or STS token).
    pub fn authenticate(
        &self,
        req: &SignedRequest,
        product_code: &str,
        action: &str,
        params: &BTreeMap<String, String>,
    ) -> CloudResult<Caller> {
        let state = self.snapshot();
        let now = self.now_ms();
        let ak = req
            .access_key_id
            .as_deref()
            .ok_or_else(|| CloudError::missing_param("AccessKeyId"))?;
        if let Some(token) = &req.security_token {
            let claims = auth::decode_token(token, &state.signing_key, now)?;
            if claims.access_key_id != ak {
                return Err(CloudError::new(
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "Specified SecurityToken mismatch with the AccessKey.",
                    400,
                ));
            }
            if !state.roles.contains_key(&claims.role_name) {
                return Err(CloudError::new(
                    "InvalidSecurityToken.Expired",
                    "Specified SecurityToken is expired: its role no longer exists.",
                    400,
                ));
            }
            auth::verify_signature(
                req,
                &claims.access_key_secret,
                product_code,
                action,
                params,
                now,
            )?;
            return Ok(Caller {
                principal: Principal::AssumedRole {
                    role: claims.role_name,
                    session: claims.session_name,
                },
                access_key_id: ak.to_owned(),
            });
        }
        let key = state.access_keys.get(ak).ok_or_else(|| {
            CloudError::new(
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
                404,
            )
        })?;
        if !key.active {
            return Err(CloudError::new(
                "InvalidAccessKeyId.Inactive",
                "Specified access key is disabled.",
                400,
            ));
        }
        auth::verify_signature(req, &key.secret, product_code, action, params, now)?;
        let principal = match &key.user {
            None => Principal::Root,
            Some(u) => Principal::User(u.clone()),
        };
        Ok(Caller {
            principal,
            access_key_id: ak.to_owned(),
        })
    }

    fn throttle(&self, key: &str) -> CloudResult<()> {
        let cfg = &self.inner.config;
        if cfg.throttle_qps <= 0.0 {
            return Ok(());
        }
        let now = self.inner.clock.now().as_millis();
        let mut buckets = self.inner.buckets.lock();
        let b = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: cfg.throttle_burst,
            last_ms: now,
        });
        let elapsed_s = now.saturating_sub(b.last_ms) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed_s * cfg.throttle_qps).min(cfg.throttle_burst);
        b.last_ms = now;
        if b.tokens < 1.0 {
            return Err(CloudError::throttling());
        }
        b.tokens -= 1.0;
        Ok(())
    }

    fn policies_of(state: &State, principal: &Principal) -> Vec<(String, PolicyDocument)> {
        let names = match principal {
            Principal::User(u) => state.users.get(u).map(|u| u.attached_policies.clone()),
            Principal::AssumedRole { role, .. } => {
                state.roles.get(role).map(|r| r.attached_policies.clone())
            }
            Principal::Root | Principal::System => None,
        };
        names
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| state.policies.get(&n).map(|p| (n, p.document.clone())))
            .collect()
    }

    /// Runs one API call end to end and records it in the audit trail.
    pub async fn invoke(
        &self,
        product: Product,
        action: &str,
        params: BTreeMap<String, String>,
        signed: &SignedRequest,
    ) -> Invocation {
        let request_id = {
            let mut rng = self.inner.rng.lock();
            uuid_like(&mut rng)
        };
        let mut caller = None;
        let mut detail = None;
        let result = self
            .invoke_inner(
                product,
                action,
                &params,
                signed,
                &mut caller,
                &mut detail,
                &request_id,
            )
            .await;
        let state = self.snapshot();
        let caller_id = caller
            .as_ref()
            .map(|c: &Caller| c.identity(&state.account_id))
            .unwrap_or_else(|| "anonymous".into());
        let ak = signed.access_key_id.clone().unwrap_or_default();
        self.audit(AuditRecord {
            seq: 0,
            time_unix_ms: self.now_ms(),
            request_id: request_id.clone(),
            caller: caller_id,
            access_key_id: ak,
            product: product.name().to_owned(),
            action: action.to_owned(),
            params: Params(params).redacted(),
            success: result.is_ok(),
            error_code: result
                .as_ref()
                .err()
                .map(|e| e.code.clone())
                .unwrap_or_default(),
            error_message: result
                .as_ref()
                .err()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
            detail: detail.unwrap_or_default(),
        })
        .await;
        metrics::counter!("ackemu_cloud_requests_total", "product" => product.name(), "code" => result.as_ref().err().map(|e| e.code.clone()).unwrap_or_else(|| "Success".into())).increment(1);
        let result = result.map(|mut v| {
            if let Value::Object(m) = &mut v {
                m.insert("RequestId".into(), Value::String(request_id.clone()));
            }
            v
        });
        Invocation { request_id, result }
    }

    #[allow(clippy::too_many_arguments)]
    async fn invoke_inner(
        &self,
        product: Product,
        action: &str,
        params: &BTreeMap<String, String>,
        signed: &SignedRequest,
        caller_out: &mut Option<Caller>,
        detail: &mut Option<String>,
        request_id: &str,
    ) -> CloudResult<Value> {
        let def = actions::table(product)
            .iter()
            .find(|d| d.name == action)
            .copied()
            .ok_or_else(|| {
                CloudError::new(
                    "InvalidAction.NotFound",
                    format!(
                        "Specified api {action:?} is not found for product {}.",
                        product.name()
                    ),
                    404,
                )
            })?;
        let caller = self.authenticate(signed, product.ram_code(), action, params)?;
        *caller_out = Some(caller.clone());
        self.throttle(&caller.access_key_id)?;
        self.run(
            product,
            def,
            &caller,
            Params::new(params.clone()),
            detail,
            request_id,
        )
        .await
    }

    /// Runs a known action for an authenticated caller (failpoint, handler,
    /// commit). Internal callers use it with [`Caller::system`].
    pub async fn run(
        &self,
        product: Product,
        def: ActionDef,
        caller: &Caller,
        params: Params,
        detail: &mut Option<String>,
        request_id: &str,
    ) -> CloudResult<Value> {
        if let Some(fp) = self.inner.failpoints.get(&(product, def.name))
            && fp.is_active()
        {
            fp.eval().await.map_err(|e| failpoint_error(&e.message))?;
        }
        match def.handler {
            Handler::Read(f) => {
                let state = self.snapshot();
                let mut rng = StdRng::from_rng(&mut *self.inner.rng.lock());
                let mut ctx = self.ctx(&state, caller, product, def.name, &mut rng, request_id);
                let out = f(&mut ctx, &state, &params);
                *detail = ctx.deny_detail.take();
                check_authorized(&ctx, out)
            }
            Handler::Write(f) => {
                let _w = self.inner.write.lock().await;
                let mut state = State::clone(&self.snapshot());
                let mut rng = StdRng::from_rng(&mut *self.inner.rng.lock());
                let (out, effects) = {
                    let mut ctx = self.ctx(&state, caller, product, def.name, &mut rng, request_id);
                    let out = f(&mut ctx, &mut state, &params);
                    *detail = ctx.deny_detail.take();
                    let out = check_authorized(&ctx, out);
                    (out, std::mem::take(&mut ctx.effects))
                };
                let out = out?;
                self.commit(state).await?;
                for e in effects {
                    if self.inner.effects.send(e).await.is_err() {
                        tracing::warn!("instance lifecycle stopped; effect dropped");
                    }
                }
                Ok(out)
            }
        }
    }

    fn ctx<'a>(
        &self,
        state: &State,
        caller: &'a Caller,
        product: Product,
        action: &'static str,
        rng: &'a mut StdRng,
        request_id: &str,
    ) -> Ctx<'a> {
        Ctx {
            caller,
            product,
            action,
            now_ms: self.now_ms(),
            request_id: request_id.to_owned(),
            effects: Vec::new(),
            rng,
            policies: Self::policies_of(state, &caller.principal),
            authorized: false,
            deny_detail: None,
            fabric: self.inner.fabric.get().cloned(),
            hypervisor: self.inner.hypervisor.get().cloned(),
        }
    }

    async fn commit(&self, mut state: State) -> CloudResult<()> {
        state.revision += 1;
        let state = Arc::new(state);
        let store = self.inner.store.clone();
        let to_save = state.clone();
        let saved = self
            .inner
            .tasks
            .spawn_blocking("cloud/persist", move || store.save(&to_save))
            .await
            .map_err(|e| CloudError::internal(format!("persisting state: {e}")))?;
        saved.map_err(|e| {
            tracing::error!("persisting state failed, mutation not applied: {e}");
            CloudError::internal(format!("persisting state: {e}"))
        })?;
        let rev = state.revision;
        *self.inner.state.write() = state;
        self.inner.revision.send_replace(rev);
        Ok(())
    }

    /// An internal mutation (lifecycle transitions, health reports): same
    /// atomic commit, no RAM, no audit. `f` returns `Ok(false)` to skip the
    /// commit.
    pub async fn mutate<T>(
        &self,
        f: impl FnOnce(&mut State, &mut StdRng) -> CloudResult<(bool, T)>,
    ) -> CloudResult<T> {
        let _w = self.inner.write.lock().await;
        let mut state = State::clone(&self.snapshot());
        let mut rng = StdRng::from_rng(&mut *self.inner.rng.lock());
        let (changed, out) = f(&mut state, &mut rng)?;
        if changed {
            self.commit(state).await?;
        }
        Ok(out)
    }

    /// Queues lifecycle work outside an action (used at start-up).
    pub async fn enqueue(&self, e: Effect) {
        if self.inner.effects.send(e).await.is_err() {
            tracing::warn!("instance lifecycle stopped; effect dropped");
        }
    }

    async fn audit(&self, mut r: AuditRecord) {
        {
            let mut a = self.inner.audit.lock();
            a.0 += 1;
            r.seq = a.0;
            if a.1.len() >= self.inner.config.audit_capacity.max(1) {
                a.1.pop_front();
            }
            a.1.push_back(r.clone());
        }
        let store = self.inner.store.clone();
        let line = serde_json::to_string(&r).expect("audit record serialises");
        let res = self
            .inner
            .tasks
            .spawn_blocking("cloud/audit", move || store.append_audit(&line))
            .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("appending audit record: {e}"),
            Err(e) => tracing::error!("appending audit record: {e}"),
        }
    }

    /// RAM check of one action for an authenticated caller outside the
    /// action tables (e.g. `actiontrail:LookupEvents`).
    pub fn authorize_direct(&self, caller: &Caller, action: &str) -> CloudResult<()> {
        if matches!(caller.principal, Principal::Root | Principal::System) {
            return Ok(());
        }
        let state = self.snapshot();
        let policies = Self::policies_of(&state, &caller.principal);
        if ram::evaluate(
            policies.iter().map(|(n, d)| (n.as_str(), d)),
            action,
            &["*".to_owned()],
        )
        .is_allowed()
        {
            Ok(())
        } else {
            Err(CloudError::forbidden_ram())
        }
    }

    /// Audit records after `after_seq`, filtered, oldest first, at most `limit`.
    pub fn audit_query(
        &self,
        after_seq: u64,
        action: Option<&str>,
        caller: Option<&str>,
        limit: usize,
    ) -> Vec<AuditRecord> {
        let a = self.inner.audit.lock();
        a.1.iter()
            .filter(|r| r.seq > after_seq)
            .filter(|r| action.is_none_or(|x| r.action == x))
            .filter(|r| caller.is_none_or(|x| r.caller.contains(x)))
            .take(limit)
            .cloned()
            .collect()
    }
}

fn check_authorized(ctx: &Ctx<'_>, out: CloudResult<Value>) -> CloudResult<Value> {
    match out {
        Ok(_) if !ctx.authorized => Err(CloudError::internal(format!(
            "action {} completed without authorization (a cloudsim bug)",
            ctx.action
        ))),
        other => other,
    }
}

/// `return(<msg>)` on a `cloud/…` failpoint: a known cloud code becomes that
/// error (`return(Throttling.User)`), anything else an `InternalError`.
pub fn failpoint_error(msg: &str) -> CloudError {
    match msg {
        "Throttling.User" | "Throttling" => CloudError::throttling(),
        "ServiceUnavailable" => CloudError::service_unavailable(
            "The request has failed due to a temporary failure of the server.",
        ),
        "Forbidden.RAM" => CloudError::forbidden_ram(),
        m if m.contains('.') && !m.contains(' ') => {
            CloudError::new(m, format!("injected error {m}"), 400)
        }
        m => CloudError::internal(format!(
            "The request processing has failed due to some unknown error: {m}"
        )),
    }
}

/// A request id shaped like Alibaba's (`8-4-4-4-12` uppercase hex).
pub fn uuid_like(rng: &mut StdRng) -> String {
    let b: [u8; 16] = rng.random();
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// ISO-8601 UTC with seconds, as the OpenAPI prints times.
pub fn iso8601(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// `{"Key": {"Inner": [..]}}` — the OpenAPI's list nesting.
pub fn nested(outer: &str, inner: &str, items: Vec<Value>) -> Value {
    json!({ outer: { inner: items } })
}
