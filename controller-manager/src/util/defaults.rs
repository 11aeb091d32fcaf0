//! The API server's defaults for pod templates (`SetDefaults_PodSpec`,
//! `SetDefaults_Container`), applied before templates are compared or
//! hashed, so that a template reads the same whether or not the API server
//! that stored it filled them in.

use ackemu_kube::api::core::v1::{Container, PodSpec, PodTemplateSpec, ResourceRequirements};

fn container(c: &mut Container) {
    if c.image_pull_policy.is_none() {
        let image = c.image.as_deref().unwrap_or("");
        let last = image.rsplit('/').next().unwrap_or("");
        let tag = if image.contains('@') {
            Some("digest")
        } else {
            last.split_once(':').map(|(_, t)| t)
        };
        c.image_pull_policy = Some(match tag {
            None | Some("latest") => "Always".into(),
            Some(_) => "IfNotPresent".into(),
        });
    }
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    c.resources
        .get_or_insert_with(ResourceRequirements::default);
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
}

pub fn pod_spec(s: &mut PodSpec) {
    s.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    s.restart_policy.get_or_insert_with(|| "Always".into());
    s.termination_grace_period_seconds.get_or_insert(30);
    s.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    s.security_context.get_or_insert_with(Default::default);
    for c in s
        .containers
        .iter_mut()
        .chain(s.init_containers.iter_mut().flatten())
    {
        container(c);
    }
}

/// The template with defaults filled in.
pub fn pod_template(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(s) = t.spec.as_mut() {
        pod_spec(s);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        let pol = |image: &str| {
            let mut c = Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Default::default()
            };
            container(&mut c);
            c.image_pull_policy.unwrap()
        };
        assert_eq!(pol("app"), "Always");
        assert_eq!(pol("app:latest"), "Always");
        assert_eq!(pol("app:2"), "IfNotPresent");
        assert_eq!(pol("registry:5000/app"), "Always");
        assert_eq!(pol("registry:5000/app:1"), "IfNotPresent");
    }

    #[test]
    fn defaults_do_not_override() {
        let mut s = PodSpec {
            restart_policy: Some("Never".into()),
            ..Default::default()
        };
        pod_spec(&mut s);
        assert_eq!(s.restart_policy.as_deref(), Some("Never"));
        assert_eq!(s.termination_grace_period_seconds, Some(30));
    }
}
