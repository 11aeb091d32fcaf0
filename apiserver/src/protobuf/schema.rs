// Field tables of the Kubernetes protobuf wire format (k8s.io/api and
// k8s.io/apimachinery generated.proto): message name, then (number, JSON
// name, kind, repeated). Generated from the published schema; edit by
// regenerating, not by hand.
use super::{Field as F, Kind as K, Message};

pub static MESSAGES: &[Message] = &[
    Message {
        name: "k8s.io.api.apps.v1.DaemonSet",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(2), false),
            F(3, "status", K::Msg(3), false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.DaemonSetCondition",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "status", K::Str, false),
            F(3, "lastTransitionTime", K::Time, false),
            F(4, "reason", K::Str, false),
            F(5, "message", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.DaemonSetSpec",
        fields: &[
            F(1, "selector", K::Msg(248), false),
            F(2, "template", K::Msg(177), false),
            F(3, "updateStrategy", K::Msg(4), false),
            F(4, "minReadySeconds", K::Int, false),
            F(6, "revisionHistoryLimit", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.DaemonSetStatus",
        fields: &[
            F(1, "currentNumberScheduled", K::Int, false),
            F(2, "numberMisscheduled", K::Int, false),
            F(3, "desiredNumberScheduled", K::Int, false),
            F(4, "numberReady", K::Int, false),
            F(5, "observedGeneration", K::Int, false),
            F(6, "updatedNumberScheduled", K::Int, false),
            F(7, "numberAvailable", K::Int, false),
            F(8, "numberUnavailable", K::Int, false),
            F(9, "collisionCount", K::Int, false),
            F(10, "conditions", K::Msg(1), true),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.DaemonSetUpdateStrategy",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "rollingUpdate", K::Msg(14), false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.Deployment",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(7), false),
            F(3, "status", K::Msg(8), false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.DeploymentCondition",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "status", K::Str, false),
            F(4, "reason", K::Str, false),
            F(5, "message", K::Str, false),
            F(6, "lastUpdateTime", K::Time, false),
            F(7, "lastTransitionTime", K::Time, false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.DeploymentSpec",
        fields: &[
            F(1, "replicas", K::Int, false),
            F(2, "selector", K::Msg(248), false),
            F(3, "template", K::Msg(177), false),
            F(4, "strategy", K::Msg(9), false),
            F(5, "minReadySeconds", K::Int, false),
            F(6, "revisionHistoryLimit", K::Int, false),
            F(7, "paused", K::Bool, false),
            F(9, "progressDeadlineSeconds", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.DeploymentStatus",
        fields: &[
            F(1, "observedGeneration", K::Int, false),
            F(2, "replicas", K::Int, false),
            F(3, "updatedReplicas", K::Int, false),
            F(4, "availableReplicas", K::Int, false),
            F(5, "unavailableReplicas", K::Int, false),
            F(6, "conditions", K::Msg(6), true),
            F(7, "readyReplicas", K::Int, false),
            F(8, "collisionCount", K::Int, false),
            F(9, "terminatingReplicas", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.DeploymentStrategy",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "rollingUpdate", K::Msg(15), false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.ReplicaSet",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(12), false),
            F(3, "status", K::Msg(13), false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.ReplicaSetCondition",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "status", K::Str, false),
            F(3, "lastTransitionTime", K::Time, false),
            F(4, "reason", K::Str, false),
            F(5, "message", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.ReplicaSetSpec",
        fields: &[
            F(1, "replicas", K::Int, false),
            F(2, "selector", K::Msg(248), false),
            F(3, "template", K::Msg(177), false),
            F(4, "minReadySeconds", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.ReplicaSetStatus",
        fields: &[
            F(1, "replicas", K::Int, false),
            F(2, "fullyLabeledReplicas", K::Int, false),
            F(3, "observedGeneration", K::Int, false),
            F(4, "readyReplicas", K::Int, false),
            F(5, "availableReplicas", K::Int, false),
            F(6, "conditions", K::Msg(11), true),
            F(7, "terminatingReplicas", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.RollingUpdateDaemonSet",
        fields: &[
            F(1, "maxUnavailable", K::IntOrString, false),
            F(2, "maxSurge", K::IntOrString, false),
        ],
    },
    Message {
        name: "k8s.io.api.apps.v1.RollingUpdateDeployment",
        fields: &[
            F(1, "maxUnavailable", K::IntOrString, false),
            F(2, "maxSurge", K::IntOrString, false),
        ],
    },
    Message {
        name: "k8s.io.api.authentication.v1.AttestationValue",
        fields: &[F(1, "items", K::Str, true)],
    },
    Message {
        name: "k8s.io.api.authentication.v1.BoundObjectReference",
        fields: &[
            F(1, "kind", K::Str, false),
            F(2, "apiVersion", K::Str, false),
            F(3, "name", K::Str, false),
            F(4, "uID", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.authentication.v1.ExtraValue",
        fields: &[F(1, "items", K::Str, true)],
    },
    Message {
        name: "k8s.io.api.authentication.v1.SelfSubjectReview",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "status", K::Msg(20), false),
        ],
    },
    Message {
        name: "k8s.io.api.authentication.v1.SelfSubjectReviewStatus",
        fields: &[F(1, "userInfo", K::Msg(27), false)],
    },
    Message {
        name: "k8s.io.api.authentication.v1.TokenRequest",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(22), false),
            F(3, "status", K::Msg(23), false),
        ],
    },
    Message {
        name: "k8s.io.api.authentication.v1.TokenRequestSpec",
        fields: &[
            F(1, "audiences", K::Str, true),
            F(3, "boundObjectRef", K::Msg(17), false),
            F(4, "expirationSeconds", K::Int, false),
            F(5, "attestations", K::Map(&K::Str, &K::Msg(16)), false),
        ],
    },
    Message {
        name: "k8s.io.api.authentication.v1.TokenRequestStatus",
        fields: &[
            F(1, "token", K::Str, false),
            F(2, "expirationTimestamp", K::Time, false),
        ],
    },
    Message {
        name: "k8s.io.api.authentication.v1.TokenReview",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(25), false),
            F(3, "status", K::Msg(26), false),
        ],
    },
    Message {
        name: "k8s.io.api.authentication.v1.TokenReviewSpec",
        fields: &[
            F(1, "token", K::Str, false),
            F(2, "audiences", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.api.authentication.v1.TokenReviewStatus",
        fields: &[
            F(1, "authenticated", K::Bool, false),
            F(2, "user", K::Msg(27), false),
            F(3, "error", K::Str, false),
            F(4, "audiences", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.api.authentication.v1.UserInfo",
        fields: &[
            F(1, "username", K::Str, false),
            F(2, "uid", K::Str, false),
            F(3, "groups", K::Str, true),
            F(4, "extra", K::Map(&K::Str, &K::Msg(18)), false),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.ExtraValue",
        fields: &[F(1, "items", K::Str, true)],
    },
    Message {
        name: "k8s.io.api.authorization.v1.FieldSelectorAttributes",
        fields: &[
            F(1, "rawSelector", K::Str, false),
            F(2, "requirements", K::Msg(247), true),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.LabelSelectorAttributes",
        fields: &[
            F(1, "rawSelector", K::Str, false),
            F(2, "requirements", K::Msg(249), true),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.LocalSubjectAccessReview",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(41), false),
            F(3, "status", K::Msg(42), false),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.NonResourceAttributes",
        fields: &[F(1, "path", K::Str, false), F(2, "verb", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.authorization.v1.NonResourceRule",
        fields: &[
            F(1, "verbs", K::Str, true),
            F(2, "nonResourceURLs", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.ResourceAttributes",
        fields: &[
            F(1, "namespace", K::Str, false),
            F(2, "verb", K::Str, false),
            F(3, "group", K::Str, false),
            F(4, "version", K::Str, false),
            F(5, "resource", K::Str, false),
            F(6, "subresource", K::Str, false),
            F(7, "name", K::Str, false),
            F(8, "fieldSelector", K::Msg(29), false),
            F(9, "labelSelector", K::Msg(30), false),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.ResourceRule",
        fields: &[
            F(1, "verbs", K::Str, true),
            F(2, "apiGroups", K::Str, true),
            F(3, "resources", K::Str, true),
            F(4, "resourceNames", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.SelfSubjectAccessReview",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(37), false),
            F(3, "status", K::Msg(42), false),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.SelfSubjectAccessReviewSpec",
        fields: &[
            F(1, "resourceAttributes", K::Msg(34), false),
            F(2, "nonResourceAttributes", K::Msg(32), false),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.SelfSubjectRulesReview",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(39), false),
            F(3, "status", K::Msg(43), false),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.SelfSubjectRulesReviewSpec",
        fields: &[F(1, "namespace", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.authorization.v1.SubjectAccessReview",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(41), false),
            F(3, "status", K::Msg(42), false),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.SubjectAccessReviewSpec",
        fields: &[
            F(1, "resourceAttributes", K::Msg(34), false),
            F(2, "nonResourceAttributes", K::Msg(32), false),
            F(3, "user", K::Str, false),
            F(4, "groups", K::Str, true),
            F(5, "extra", K::Map(&K::Str, &K::Msg(28)), false),
            F(6, "uid", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.SubjectAccessReviewStatus",
        fields: &[
            F(1, "allowed", K::Bool, false),
            F(2, "reason", K::Str, false),
            F(3, "evaluationError", K::Str, false),
            F(4, "denied", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.authorization.v1.SubjectRulesReviewStatus",
        fields: &[
            F(1, "resourceRules", K::Msg(35), true),
            F(2, "nonResourceRules", K::Msg(33), true),
            F(3, "incomplete", K::Bool, false),
            F(4, "evaluationError", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.certificates.v1.CertificateSigningRequest",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(46), false),
            F(3, "status", K::Msg(47), false),
        ],
    },
    Message {
        name: "k8s.io.api.certificates.v1.CertificateSigningRequestCondition",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "reason", K::Str, false),
            F(3, "message", K::Str, false),
            F(4, "lastUpdateTime", K::Time, false),
            F(5, "lastTransitionTime", K::Time, false),
            F(6, "status", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.certificates.v1.CertificateSigningRequestSpec",
        fields: &[
            F(1, "request", K::Bytes, false),
            F(2, "username", K::Str, false),
            F(3, "uid", K::Str, false),
            F(4, "groups", K::Str, true),
            F(5, "usages", K::Str, true),
            F(6, "extra", K::Map(&K::Str, &K::Msg(48)), false),
            F(7, "signerName", K::Str, false),
            F(8, "expirationSeconds", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.certificates.v1.CertificateSigningRequestStatus",
        fields: &[
            F(1, "conditions", K::Msg(45), true),
            F(2, "certificate", K::Bytes, false),
        ],
    },
    Message {
        name: "k8s.io.api.certificates.v1.ExtraValue",
        fields: &[F(1, "items", K::Str, true)],
    },
    Message {
        name: "k8s.io.api.coordination.v1.Lease",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(50), false),
        ],
    },
    Message {
        name: "k8s.io.api.coordination.v1.LeaseSpec",
        fields: &[
            F(1, "holderIdentity", K::Str, false),
            F(2, "leaseDurationSeconds", K::Int, false),
            F(3, "acquireTime", K::MicroTime, false),
            F(4, "renewTime", K::MicroTime, false),
            F(5, "leaseTransitions", K::Int, false),
            F(6, "strategy", K::Str, false),
            F(7, "preferredHolder", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.AWSElasticBlockStoreVolumeSource",
        fields: &[
            F(1, "volumeID", K::Str, false),
            F(2, "fsType", K::Str, false),
            F(3, "partition", K::Int, false),
            F(4, "readOnly", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Affinity",
        fields: &[
            F(1, "nodeAffinity", K::Msg(133), false),
            F(2, "podAffinity", K::Msg(159), false),
            F(3, "podAntiAffinity", K::Msg(161), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.AppArmorProfile",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "localhostProfile", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.AttachedVolume",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "devicePath", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.AzureDiskVolumeSource",
        fields: &[
            F(1, "diskName", K::Str, false),
            F(2, "diskURI", K::Str, false),
            F(3, "cachingMode", K::Str, false),
            F(4, "fsType", K::Str, false),
            F(5, "readOnly", K::Bool, false),
            F(6, "kind", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.AzureFileVolumeSource",
        fields: &[
            F(1, "secretName", K::Str, false),
            F(2, "shareName", K::Str, false),
            F(3, "readOnly", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Binding",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "target", K::Msg(153), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.CSIVolumeSource",
        fields: &[
            F(1, "driver", K::Str, false),
            F(2, "readOnly", K::Bool, false),
            F(3, "fsType", K::Str, false),
            F(4, "volumeAttributes", K::Map(&K::Str, &K::Str), false),
            F(5, "nodePublishSecretRef", K::Msg(125), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Capabilities",
        fields: &[F(1, "add", K::Str, true), F(2, "drop", K::Str, true)],
    },
    Message {
        name: "k8s.io.api.core.v1.CephFSVolumeSource",
        fields: &[
            F(1, "monitors", K::Str, true),
            F(2, "path", K::Str, false),
            F(3, "user", K::Str, false),
            F(4, "secretFile", K::Str, false),
            F(5, "secretRef", K::Msg(125), false),
            F(6, "readOnly", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.CinderVolumeSource",
        fields: &[
            F(1, "volumeID", K::Str, false),
            F(2, "fsType", K::Str, false),
            F(3, "readOnly", K::Bool, false),
            F(4, "secretRef", K::Msg(125), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ClientIPConfig",
        fields: &[F(1, "timeoutSeconds", K::Int, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.ClusterTrustBundleProjection",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "signerName", K::Str, false),
            F(3, "labelSelector", K::Msg(248), false),
            F(4, "path", K::Str, false),
            F(5, "optional", K::Bool, false),
            F(6, "user", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ConfigMap",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "data", K::Map(&K::Str, &K::Str), false),
            F(3, "binaryData", K::Map(&K::Str, &K::Bytes), false),
            F(4, "immutable", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ConfigMapEnvSource",
        fields: &[
            F(1, "localObjectReference", K::Msg(125), false),
            F(2, "optional", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ConfigMapKeySelector",
        fields: &[
            F(1, "localObjectReference", K::Msg(125), false),
            F(2, "key", K::Str, false),
            F(3, "optional", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ConfigMapNodeConfigSource",
        fields: &[
            F(1, "namespace", K::Str, false),
            F(2, "name", K::Str, false),
            F(3, "uid", K::Str, false),
            F(4, "resourceVersion", K::Str, false),
            F(5, "kubeletConfigKey", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ConfigMapProjection",
        fields: &[
            F(1, "localObjectReference", K::Msg(125), false),
            F(2, "items", K::Msg(119), true),
            F(4, "optional", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ConfigMapVolumeSource",
        fields: &[
            F(1, "localObjectReference", K::Msg(125), false),
            F(2, "items", K::Msg(119), true),
            F(3, "defaultMode", K::Int, false),
            F(4, "optional", K::Bool, false),
            F(5, "defaultUser", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Container",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "image", K::Str, false),
            F(3, "command", K::Str, true),
            F(4, "args", K::Str, true),
            F(5, "workingDir", K::Str, false),
            F(6, "ports", K::Msg(73), true),
            F(7, "env", K::Msg(93), true),
            F(8, "resources", K::Msg(190), false),
            F(9, "volumeMounts", K::Msg(220), true),
            F(10, "livenessProbe", K::Msg(182), false),
            F(11, "readinessProbe", K::Msg(182), false),
            F(12, "lifecycle", K::Msg(120), false),
            F(13, "terminationMessagePath", K::Str, false),
            F(14, "imagePullPolicy", K::Str, false),
            F(15, "securityContext", K::Msg(200), false),
            F(16, "stdin", K::Bool, false),
            F(17, "stdinOnce", K::Bool, false),
            F(18, "tty", K::Bool, false),
            F(19, "envFrom", K::Msg(92), true),
            F(20, "terminationMessagePolicy", K::Str, false),
            F(21, "volumeDevices", K::Msg(218), true),
            F(22, "startupProbe", K::Msg(182), false),
            F(23, "resizePolicy", K::Msg(74), true),
            F(24, "restartPolicy", K::Str, false),
            F(25, "restartPolicyRules", K::Msg(75), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerExtendedResourceRequest",
        fields: &[
            F(1, "containerName", K::Str, false),
            F(2, "resourceName", K::Str, false),
            F(3, "requestName", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerImage",
        fields: &[
            F(1, "names", K::Str, true),
            F(2, "sizeBytes", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerPort",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "hostPort", K::Int, false),
            F(3, "containerPort", K::Int, false),
            F(4, "protocol", K::Str, false),
            F(5, "hostIP", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerResizePolicy",
        fields: &[
            F(1, "resourceName", K::Str, false),
            F(2, "restartPolicy", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerRestartRule",
        fields: &[
            F(1, "action", K::Str, false),
            F(2, "exitCodes", K::Msg(76), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerRestartRuleOnExitCodes",
        fields: &[
            F(1, "operator", K::Str, false),
            F(2, "values", K::Int, true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerState",
        fields: &[
            F(1, "waiting", K::Msg(80), false),
            F(2, "running", K::Msg(78), false),
            F(3, "terminated", K::Msg(79), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerStateRunning",
        fields: &[F(1, "startedAt", K::Time, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerStateTerminated",
        fields: &[
            F(1, "exitCode", K::Int, false),
            F(2, "signal", K::Int, false),
            F(3, "reason", K::Str, false),
            F(4, "message", K::Str, false),
            F(5, "startedAt", K::Time, false),
            F(6, "finishedAt", K::Time, false),
            F(7, "containerID", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerStateWaiting",
        fields: &[
            F(1, "reason", K::Str, false),
            F(2, "message", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerStatus",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "state", K::Msg(77), false),
            F(3, "lastState", K::Msg(77), false),
            F(4, "ready", K::Bool, false),
            F(5, "restartCount", K::Int, false),
            F(6, "image", K::Str, false),
            F(7, "imageID", K::Str, false),
            F(8, "containerID", K::Str, false),
            F(9, "started", K::Bool, false),
            F(
                10,
                "allocatedResources",
                K::Map(&K::Str, &K::Quantity),
                false,
            ),
            F(11, "resources", K::Msg(190), false),
            F(12, "volumeMounts", K::Msg(221), true),
            F(13, "user", K::Msg(82), false),
            F(14, "allocatedResourcesStatus", K::Msg(191), true),
            F(15, "stopSignal", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ContainerUser",
        fields: &[F(1, "linux", K::Msg(122), false)],
    },
    Message {
        name: "k8s.io.api.core.v1.DaemonEndpoint",
        fields: &[F(1, "Port", K::Int, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.DownwardAPIProjection",
        fields: &[F(1, "items", K::Msg(85), true)],
    },
    Message {
        name: "k8s.io.api.core.v1.DownwardAPIVolumeFile",
        fields: &[
            F(1, "path", K::Str, false),
            F(2, "fieldRef", K::Msg(152), false),
            F(3, "resourceFieldRef", K::Msg(188), false),
            F(4, "mode", K::Int, false),
            F(5, "user", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.DownwardAPIVolumeSource",
        fields: &[
            F(1, "items", K::Msg(85), true),
            F(2, "defaultMode", K::Int, false),
            F(3, "defaultUser", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EmptyDirVolumeSource",
        fields: &[
            F(1, "medium", K::Str, false),
            F(2, "sizeLimit", K::Quantity, false),
            F(3, "mode", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EndpointAddress",
        fields: &[
            F(1, "ip", K::Str, false),
            F(2, "targetRef", K::Msg(153), false),
            F(3, "hostname", K::Str, false),
            F(4, "nodeName", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EndpointPort",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "port", K::Int, false),
            F(3, "protocol", K::Str, false),
            F(4, "appProtocol", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EndpointSubset",
        fields: &[
            F(1, "addresses", K::Msg(88), true),
            F(2, "notReadyAddresses", K::Msg(88), true),
            F(3, "ports", K::Msg(89), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Endpoints",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "subsets", K::Msg(90), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EnvFromSource",
        fields: &[
            F(1, "prefix", K::Str, false),
            F(2, "configMapRef", K::Msg(65), false),
            F(3, "secretRef", K::Msg(196), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EnvVar",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "value", K::Str, false),
            F(3, "valueFrom", K::Msg(94), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EnvVarSource",
        fields: &[
            F(1, "fieldRef", K::Msg(152), false),
            F(2, "resourceFieldRef", K::Msg(188), false),
            F(3, "configMapKeyRef", K::Msg(66), false),
            F(4, "secretKeyRef", K::Msg(197), false),
            F(5, "fileKeyRef", K::Msg(104), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EphemeralContainer",
        fields: &[
            F(1, "ephemeralContainerCommon", K::Msg(96), false),
            F(2, "targetContainerName", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EphemeralContainerCommon",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "image", K::Str, false),
            F(3, "command", K::Str, true),
            F(4, "args", K::Str, true),
            F(5, "workingDir", K::Str, false),
            F(6, "ports", K::Msg(73), true),
            F(7, "env", K::Msg(93), true),
            F(8, "resources", K::Msg(190), false),
            F(9, "volumeMounts", K::Msg(220), true),
            F(10, "livenessProbe", K::Msg(182), false),
            F(11, "readinessProbe", K::Msg(182), false),
            F(12, "lifecycle", K::Msg(120), false),
            F(13, "terminationMessagePath", K::Str, false),
            F(14, "imagePullPolicy", K::Str, false),
            F(15, "securityContext", K::Msg(200), false),
            F(16, "stdin", K::Bool, false),
            F(17, "stdinOnce", K::Bool, false),
            F(18, "tty", K::Bool, false),
            F(19, "envFrom", K::Msg(92), true),
            F(20, "terminationMessagePolicy", K::Str, false),
            F(21, "volumeDevices", K::Msg(218), true),
            F(22, "startupProbe", K::Msg(182), false),
            F(23, "resizePolicy", K::Msg(74), true),
            F(24, "restartPolicy", K::Str, false),
            F(25, "restartPolicyRules", K::Msg(75), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EphemeralVolumeSource",
        fields: &[F(1, "volumeClaimTemplate", K::Msg(155), false)],
    },
    Message {
        name: "k8s.io.api.core.v1.Event",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "involvedObject", K::Msg(153), false),
            F(3, "reason", K::Str, false),
            F(4, "message", K::Str, false),
            F(5, "source", K::Msg(100), false),
            F(6, "firstTimestamp", K::Time, false),
            F(7, "lastTimestamp", K::Time, false),
            F(8, "count", K::Int, false),
            F(9, "type", K::Str, false),
            F(10, "eventTime", K::MicroTime, false),
            F(11, "series", K::Msg(99), false),
            F(12, "action", K::Str, false),
            F(13, "related", K::Msg(153), false),
            F(14, "reportingComponent", K::Str, false),
            F(15, "reportingInstance", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EventSeries",
        fields: &[
            F(1, "count", K::Int, false),
            F(2, "lastObservedTime", K::MicroTime, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EventSource",
        fields: &[
            F(1, "component", K::Str, false),
            F(2, "host", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.EvictionResponder",
        fields: &[F(1, "name", K::Str, false), F(2, "priority", K::Int, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.ExecAction",
        fields: &[F(1, "command", K::Str, true)],
    },
    Message {
        name: "k8s.io.api.core.v1.FCVolumeSource",
        fields: &[
            F(1, "targetWWNs", K::Str, true),
            F(2, "lun", K::Int, false),
            F(3, "fsType", K::Str, false),
            F(4, "readOnly", K::Bool, false),
            F(5, "wwids", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.FileKeySelector",
        fields: &[
            F(1, "volumeName", K::Str, false),
            F(2, "path", K::Str, false),
            F(3, "key", K::Str, false),
            F(4, "optional", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.FlexVolumeSource",
        fields: &[
            F(1, "driver", K::Str, false),
            F(2, "fsType", K::Str, false),
            F(3, "secretRef", K::Msg(125), false),
            F(4, "readOnly", K::Bool, false),
            F(5, "options", K::Map(&K::Str, &K::Str), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.FlockerVolumeSource",
        fields: &[
            F(1, "datasetName", K::Str, false),
            F(2, "datasetUUID", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.GCEPersistentDiskVolumeSource",
        fields: &[
            F(1, "pdName", K::Str, false),
            F(2, "fsType", K::Str, false),
            F(3, "partition", K::Int, false),
            F(4, "readOnly", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.GRPCAction",
        fields: &[
            F(1, "port", K::Int, false),
            F(2, "service", K::Str, false),
            F(3, "mode", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.GitRepoVolumeSource",
        fields: &[
            F(1, "repository", K::Str, false),
            F(2, "revision", K::Str, false),
            F(3, "directory", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.GlusterfsVolumeSource",
        fields: &[
            F(1, "endpoints", K::Str, false),
            F(2, "path", K::Str, false),
            F(3, "readOnly", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.HTTPGetAction",
        fields: &[
            F(1, "path", K::Str, false),
            F(2, "port", K::IntOrString, false),
            F(3, "host", K::Str, false),
            F(4, "scheme", K::Str, false),
            F(5, "httpHeaders", K::Msg(112), true),
            F(6, "protocol", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.HTTPHeader",
        fields: &[F(1, "name", K::Str, false), F(2, "value", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.HostAlias",
        fields: &[F(1, "ip", K::Str, false), F(2, "hostnames", K::Str, true)],
    },
    Message {
        name: "k8s.io.api.core.v1.HostIP",
        fields: &[F(1, "ip", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.HostPathVolumeSource",
        fields: &[F(1, "path", K::Str, false), F(2, "type", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.ISCSIVolumeSource",
        fields: &[
            F(1, "targetPortal", K::Str, false),
            F(2, "iqn", K::Str, false),
            F(3, "lun", K::Int, false),
            F(4, "iscsiInterface", K::Str, false),
            F(5, "fsType", K::Str, false),
            F(6, "readOnly", K::Bool, false),
            F(7, "portals", K::Str, true),
            F(8, "chapAuthDiscovery", K::Bool, false),
            F(10, "secretRef", K::Msg(125), false),
            F(11, "chapAuthSession", K::Bool, false),
            F(12, "initiatorName", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ImageVolumeSource",
        fields: &[
            F(1, "reference", K::Str, false),
            F(2, "pullPolicy", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ImageVolumeStatus",
        fields: &[F(1, "imageRef", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.KeyToPath",
        fields: &[
            F(1, "key", K::Str, false),
            F(2, "path", K::Str, false),
            F(3, "mode", K::Int, false),
            F(4, "user", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Lifecycle",
        fields: &[
            F(1, "postStart", K::Msg(121), false),
            F(2, "preStop", K::Msg(121), false),
            F(3, "stopSignal", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.LifecycleHandler",
        fields: &[
            F(1, "exec", K::Msg(102), false),
            F(2, "httpGet", K::Msg(111), false),
            F(3, "tcpSocket", K::Msg(211), false),
            F(4, "sleep", K::Msg(208), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.LinuxContainerUser",
        fields: &[
            F(1, "uid", K::Int, false),
            F(2, "gid", K::Int, false),
            F(3, "supplementalGroups", K::Int, true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.LoadBalancerIngress",
        fields: &[
            F(1, "ip", K::Str, false),
            F(2, "hostname", K::Str, false),
            F(3, "ipMode", K::Str, false),
            F(4, "ports", K::Msg(179), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.LoadBalancerStatus",
        fields: &[F(1, "ingress", K::Msg(123), true)],
    },
    Message {
        name: "k8s.io.api.core.v1.LocalObjectReference",
        fields: &[F(1, "name", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.NFSVolumeSource",
        fields: &[
            F(1, "server", K::Str, false),
            F(2, "path", K::Str, false),
            F(3, "readOnly", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Namespace",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(129), false),
            F(3, "status", K::Msg(130), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NamespaceCondition",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "status", K::Str, false),
            F(4, "lastTransitionTime", K::Time, false),
            F(5, "reason", K::Str, false),
            F(6, "message", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NamespaceSpec",
        fields: &[F(1, "finalizers", K::Str, true)],
    },
    Message {
        name: "k8s.io.api.core.v1.NamespaceStatus",
        fields: &[
            F(1, "phase", K::Str, false),
            F(2, "conditions", K::Msg(128), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Node",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(148), false),
            F(3, "status", K::Msg(149), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeAddress",
        fields: &[F(1, "type", K::Str, false), F(2, "address", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeAffinity",
        fields: &[
            F(
                1,
                "requiredDuringSchedulingIgnoredDuringExecution",
                K::Msg(145),
                false,
            ),
            F(
                2,
                "preferredDuringSchedulingIgnoredDuringExecution",
                K::Msg(181),
                true,
            ),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeAllocatableMappedResources",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "quantity", K::Quantity, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeAllocatableOverheadResources",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "perPod", K::Quantity, false),
            F(3, "perContainer", K::Quantity, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeAllocatableResourceClaimStatus",
        fields: &[
            F(1, "resourceClaimName", K::Str, false),
            F(2, "containers", K::Str, true),
            F(4, "mapping", K::Msg(134), true),
            F(5, "overhead", K::Msg(135), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeCondition",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "status", K::Str, false),
            F(3, "lastHeartbeatTime", K::Time, false),
            F(4, "lastTransitionTime", K::Time, false),
            F(5, "reason", K::Str, false),
            F(6, "message", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeConfigSource",
        fields: &[F(2, "configMap", K::Msg(67), false)],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeConfigStatus",
        fields: &[
            F(1, "assigned", K::Msg(138), false),
            F(2, "active", K::Msg(138), false),
            F(3, "lastKnownGood", K::Msg(138), false),
            F(4, "error", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeDaemonEndpoints",
        fields: &[F(1, "kubeletEndpoint", K::Msg(83), false)],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeFeatures",
        fields: &[F(1, "supplementalGroupsPolicy", K::Bool, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.NodePodPreemptionPolicy",
        fields: &[F(1, "disableResizePreemption", K::Str, true)],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeRuntimeHandler",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "features", K::Msg(144), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeRuntimeHandlerFeatures",
        fields: &[
            F(1, "recursiveReadOnlyMounts", K::Bool, false),
            F(2, "userNamespaces", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeSelector",
        fields: &[F(1, "nodeSelectorTerms", K::Msg(147), true)],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeSelectorRequirement",
        fields: &[
            F(1, "key", K::Str, false),
            F(2, "operator", K::Str, false),
            F(3, "values", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeSelectorTerm",
        fields: &[
            F(1, "matchExpressions", K::Msg(146), true),
            F(2, "matchFields", K::Msg(146), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeSpec",
        fields: &[
            F(1, "podCIDR", K::Str, false),
            F(2, "externalID", K::Str, false),
            F(3, "providerID", K::Str, false),
            F(4, "unschedulable", K::Bool, false),
            F(5, "taints", K::Msg(212), true),
            F(6, "configSource", K::Msg(138), false),
            F(7, "podCIDRs", K::Str, true),
            F(8, "podPreemptionPolicy", K::Msg(142), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeStatus",
        fields: &[
            F(1, "capacity", K::Map(&K::Str, &K::Quantity), false),
            F(2, "allocatable", K::Map(&K::Str, &K::Quantity), false),
            F(3, "phase", K::Str, false),
            F(4, "conditions", K::Msg(137), true),
            F(5, "addresses", K::Msg(132), true),
            F(6, "daemonEndpoints", K::Msg(140), false),
            F(7, "nodeInfo", K::Msg(151), false),
            F(8, "images", K::Msg(72), true),
            F(9, "volumesInUse", K::Str, true),
            F(10, "volumesAttached", K::Msg(54), true),
            F(11, "config", K::Msg(139), false),
            F(12, "runtimeHandlers", K::Msg(143), true),
            F(13, "features", K::Msg(141), false),
            F(14, "declaredFeatures", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeSwapStatus",
        fields: &[F(1, "capacity", K::Int, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.NodeSystemInfo",
        fields: &[
            F(1, "machineID", K::Str, false),
            F(2, "systemUUID", K::Str, false),
            F(3, "bootID", K::Str, false),
            F(4, "kernelVersion", K::Str, false),
            F(5, "osImage", K::Str, false),
            F(6, "containerRuntimeVersion", K::Str, false),
            F(7, "kubeletVersion", K::Str, false),
            F(8, "kubeProxyVersion", K::Str, false),
            F(9, "operatingSystem", K::Str, false),
            F(10, "architecture", K::Str, false),
            F(11, "swap", K::Msg(150), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ObjectFieldSelector",
        fields: &[
            F(1, "apiVersion", K::Str, false),
            F(2, "fieldPath", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ObjectReference",
        fields: &[
            F(1, "kind", K::Str, false),
            F(2, "namespace", K::Str, false),
            F(3, "name", K::Str, false),
            F(4, "uid", K::Str, false),
            F(5, "apiVersion", K::Str, false),
            F(6, "resourceVersion", K::Str, false),
            F(7, "fieldPath", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PersistentVolumeClaimSpec",
        fields: &[
            F(1, "accessModes", K::Str, true),
            F(2, "resources", K::Msg(223), false),
            F(3, "volumeName", K::Str, false),
            F(4, "selector", K::Msg(248), false),
            F(5, "storageClassName", K::Str, false),
            F(6, "volumeMode", K::Str, false),
            F(7, "dataSource", K::Msg(215), false),
            F(8, "dataSourceRef", K::Msg(216), false),
            F(9, "volumeAttributesClassName", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PersistentVolumeClaimTemplate",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(154), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PersistentVolumeClaimVolumeSource",
        fields: &[
            F(1, "claimName", K::Str, false),
            F(2, "readOnly", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PhotonPersistentDiskVolumeSource",
        fields: &[F(1, "pdID", K::Str, false), F(2, "fsType", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.Pod",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(175), false),
            F(3, "status", K::Msg(176), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodAffinity",
        fields: &[
            F(
                1,
                "requiredDuringSchedulingIgnoredDuringExecution",
                K::Msg(160),
                true,
            ),
            F(
                2,
                "preferredDuringSchedulingIgnoredDuringExecution",
                K::Msg(227),
                true,
            ),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodAffinityTerm",
        fields: &[
            F(1, "labelSelector", K::Msg(248), false),
            F(2, "namespaces", K::Str, true),
            F(3, "topologyKey", K::Str, false),
            F(4, "namespaceSelector", K::Msg(248), false),
            F(5, "matchLabelKeys", K::Str, true),
            F(6, "mismatchLabelKeys", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodAntiAffinity",
        fields: &[
            F(
                1,
                "requiredDuringSchedulingIgnoredDuringExecution",
                K::Msg(160),
                true,
            ),
            F(
                2,
                "preferredDuringSchedulingIgnoredDuringExecution",
                K::Msg(227),
                true,
            ),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodCertificateProjection",
        fields: &[
            F(1, "signerName", K::Str, false),
            F(2, "keyType", K::Str, false),
            F(3, "maxExpirationSeconds", K::Int, false),
            F(4, "credentialBundlePath", K::Str, false),
            F(5, "keyPath", K::Str, false),
            F(6, "certificateChainPath", K::Str, false),
            F(7, "userAnnotations", K::Map(&K::Str, &K::Str), false),
            F(8, "user", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodCondition",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "status", K::Str, false),
            F(3, "lastProbeTime", K::Time, false),
            F(4, "lastTransitionTime", K::Time, false),
            F(5, "reason", K::Str, false),
            F(6, "message", K::Str, false),
            F(7, "observedGeneration", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodDNSConfig",
        fields: &[
            F(1, "nameservers", K::Str, true),
            F(2, "searches", K::Str, true),
            F(3, "options", K::Msg(165), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodDNSConfigOption",
        fields: &[F(1, "name", K::Str, false), F(2, "value", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.PodExtendedResourceClaimStatus",
        fields: &[
            F(1, "requestMappings", K::Msg(71), true),
            F(2, "resourceClaimName", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodIP",
        fields: &[F(1, "ip", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.PodOS",
        fields: &[F(1, "name", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.PodReadinessGate",
        fields: &[F(1, "conditionType", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.PodResourceClaim",
        fields: &[
            F(1, "name", K::Str, false),
            F(3, "resourceClaimName", K::Str, false),
            F(4, "resourceClaimTemplateName", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodResourceClaimStatus",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "resourceClaimName", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodSchedulingGate",
        fields: &[F(1, "name", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.PodSchedulingGroup",
        fields: &[F(1, "podGroupName", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.PodSecurityContext",
        fields: &[
            F(1, "seLinuxOptions", K::Msg(192), false),
            F(2, "runAsUser", K::Int, false),
            F(3, "runAsNonRoot", K::Bool, false),
            F(4, "supplementalGroups", K::Int, true),
            F(5, "fsGroup", K::Int, false),
            F(6, "runAsGroup", K::Int, false),
            F(7, "sysctls", K::Msg(210), true),
            F(8, "windowsOptions", K::Msg(228), false),
            F(9, "fsGroupChangePolicy", K::Str, false),
            F(10, "seccompProfile", K::Msg(194), false),
            F(11, "appArmorProfile", K::Msg(53), false),
            F(12, "supplementalGroupsPolicy", K::Str, false),
            F(13, "seLinuxChangePolicy", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodSpec",
        fields: &[
            F(1, "volumes", K::Msg(217), true),
            F(2, "containers", K::Msg(70), true),
            F(3, "restartPolicy", K::Str, false),
            F(4, "terminationGracePeriodSeconds", K::Int, false),
            F(5, "activeDeadlineSeconds", K::Int, false),
            F(6, "dnsPolicy", K::Str, false),
            F(7, "nodeSelector", K::Map(&K::Str, &K::Str), false),
            F(8, "serviceAccountName", K::Str, false),
            F(9, "serviceAccount", K::Str, false),
            F(10, "nodeName", K::Str, false),
            F(11, "hostNetwork", K::Bool, false),
            F(12, "hostPID", K::Bool, false),
            F(13, "hostIPC", K::Bool, false),
            F(14, "securityContext", K::Msg(174), false),
            F(15, "imagePullSecrets", K::Msg(125), true),
            F(16, "hostname", K::Str, false),
            F(17, "subdomain", K::Str, false),
            F(18, "affinity", K::Msg(52), false),
            F(19, "schedulerName", K::Str, false),
            F(20, "initContainers", K::Msg(70), true),
            F(21, "automountServiceAccountToken", K::Bool, false),
            F(22, "tolerations", K::Msg(213), true),
            F(23, "hostAliases", K::Msg(113), true),
            F(24, "priorityClassName", K::Str, false),
            F(25, "priority", K::Int, false),
            F(26, "dnsConfig", K::Msg(164), false),
            F(27, "shareProcessNamespace", K::Bool, false),
            F(28, "readinessGates", K::Msg(169), true),
            F(29, "runtimeClassName", K::Str, false),
            F(30, "enableServiceLinks", K::Bool, false),
            F(31, "preemptionPolicy", K::Str, false),
            F(32, "overhead", K::Map(&K::Str, &K::Quantity), false),
            F(33, "topologySpreadConstraints", K::Msg(214), true),
            F(34, "ephemeralContainers", K::Msg(95), true),
            F(35, "setHostnameAsFQDN", K::Bool, false),
            F(36, "os", K::Msg(168), false),
            F(37, "hostUsers", K::Bool, false),
            F(38, "schedulingGates", K::Msg(172), true),
            F(39, "resourceClaims", K::Msg(170), true),
            F(40, "resources", K::Msg(190), false),
            F(41, "hostnameOverride", K::Str, false),
            F(43, "schedulingGroup", K::Msg(173), false),
            F(44, "evictionResponders", K::Msg(101), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodStatus",
        fields: &[
            F(1, "phase", K::Str, false),
            F(2, "conditions", K::Msg(163), true),
            F(3, "message", K::Str, false),
            F(4, "reason", K::Str, false),
            F(5, "hostIP", K::Str, false),
            F(6, "podIP", K::Str, false),
            F(7, "startTime", K::Time, false),
            F(8, "containerStatuses", K::Msg(81), true),
            F(9, "qosClass", K::Str, false),
            F(10, "initContainerStatuses", K::Msg(81), true),
            F(11, "nominatedNodeName", K::Str, false),
            F(12, "podIPs", K::Msg(167), true),
            F(13, "ephemeralContainerStatuses", K::Msg(81), true),
            F(14, "resize", K::Str, false),
            F(15, "resourceClaimStatuses", K::Msg(171), true),
            F(16, "hostIPs", K::Msg(114), true),
            F(17, "observedGeneration", K::Int, false),
            F(18, "extendedResourceClaimStatus", K::Msg(166), false),
            F(
                19,
                "allocatedResources",
                K::Map(&K::Str, &K::Quantity),
                false,
            ),
            F(20, "resources", K::Msg(190), false),
            F(
                21,
                "nodeAllocatableResourceClaimStatuses",
                K::Msg(136),
                true,
            ),
            F(22, "volumeHealth", K::Msg(178), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodTemplateSpec",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(175), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PodVolumeHealth",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "healthConditions", K::Msg(219), true),
            F(3, "lastTransitionTime", K::Time, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PortStatus",
        fields: &[
            F(1, "port", K::Int, false),
            F(2, "protocol", K::Str, false),
            F(3, "error", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PortworxVolumeSource",
        fields: &[
            F(1, "volumeID", K::Str, false),
            F(2, "fsType", K::Str, false),
            F(3, "readOnly", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.PreferredSchedulingTerm",
        fields: &[
            F(1, "weight", K::Int, false),
            F(2, "preference", K::Msg(147), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Probe",
        fields: &[
            F(1, "handler", K::Msg(183), false),
            F(2, "initialDelaySeconds", K::Int, false),
            F(3, "timeoutSeconds", K::Int, false),
            F(4, "periodSeconds", K::Int, false),
            F(5, "successThreshold", K::Int, false),
            F(6, "failureThreshold", K::Int, false),
            F(7, "terminationGracePeriodSeconds", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ProbeHandler",
        fields: &[
            F(1, "exec", K::Msg(102), false),
            F(2, "httpGet", K::Msg(111), false),
            F(3, "tcpSocket", K::Msg(211), false),
            F(4, "grpc", K::Msg(108), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ProjectedVolumeSource",
        fields: &[
            F(1, "sources", K::Msg(222), true),
            F(2, "defaultMode", K::Int, false),
            F(3, "defaultUser", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.QuobyteVolumeSource",
        fields: &[
            F(1, "registry", K::Str, false),
            F(2, "volume", K::Str, false),
            F(3, "readOnly", K::Bool, false),
            F(4, "user", K::Str, false),
            F(5, "group", K::Str, false),
            F(6, "tenant", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.RBDVolumeSource",
        fields: &[
            F(1, "monitors", K::Str, true),
            F(2, "image", K::Str, false),
            F(3, "fsType", K::Str, false),
            F(4, "pool", K::Str, false),
            F(5, "user", K::Str, false),
            F(6, "keyring", K::Str, false),
            F(7, "secretRef", K::Msg(125), false),
            F(8, "readOnly", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ResourceClaim",
        fields: &[F(1, "name", K::Str, false), F(2, "request", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.ResourceFieldSelector",
        fields: &[
            F(1, "containerName", K::Str, false),
            F(2, "resource", K::Str, false),
            F(3, "divisor", K::Quantity, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ResourceHealth",
        fields: &[
            F(1, "resourceID", K::Str, false),
            F(2, "health", K::Str, false),
            F(6, "message", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ResourceRequirements",
        fields: &[
            F(1, "limits", K::Map(&K::Str, &K::Quantity), false),
            F(2, "requests", K::Map(&K::Str, &K::Quantity), false),
            F(3, "claims", K::Msg(187), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ResourceStatus",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "resources", K::Msg(189), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.SELinuxOptions",
        fields: &[
            F(1, "user", K::Str, false),
            F(2, "role", K::Str, false),
            F(3, "type", K::Str, false),
            F(4, "level", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ScaleIOVolumeSource",
        fields: &[
            F(1, "gateway", K::Str, false),
            F(2, "system", K::Str, false),
            F(3, "secretRef", K::Msg(125), false),
            F(4, "sslEnabled", K::Bool, false),
            F(5, "protectionDomain", K::Str, false),
            F(6, "storagePool", K::Str, false),
            F(7, "storageMode", K::Str, false),
            F(8, "volumeName", K::Str, false),
            F(9, "fsType", K::Str, false),
            F(10, "readOnly", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.SeccompProfile",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "localhostProfile", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Secret",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "data", K::Map(&K::Str, &K::Bytes), false),
            F(3, "type", K::Str, false),
            F(4, "stringData", K::Map(&K::Str, &K::Str), false),
            F(5, "immutable", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.SecretEnvSource",
        fields: &[
            F(1, "localObjectReference", K::Msg(125), false),
            F(2, "optional", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.SecretKeySelector",
        fields: &[
            F(1, "localObjectReference", K::Msg(125), false),
            F(2, "key", K::Str, false),
            F(3, "optional", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.SecretProjection",
        fields: &[
            F(1, "localObjectReference", K::Msg(125), false),
            F(2, "items", K::Msg(119), true),
            F(4, "optional", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.SecretVolumeSource",
        fields: &[
            F(1, "secretName", K::Str, false),
            F(2, "items", K::Msg(119), true),
            F(3, "defaultMode", K::Int, false),
            F(4, "optional", K::Bool, false),
            F(5, "defaultUser", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.SecurityContext",
        fields: &[
            F(1, "capabilities", K::Msg(59), false),
            F(2, "privileged", K::Bool, false),
            F(3, "seLinuxOptions", K::Msg(192), false),
            F(4, "runAsUser", K::Int, false),
            F(5, "runAsNonRoot", K::Bool, false),
            F(6, "readOnlyRootFilesystem", K::Bool, false),
            F(7, "allowPrivilegeEscalation", K::Bool, false),
            F(8, "runAsGroup", K::Int, false),
            F(9, "procMount", K::Str, false),
            F(10, "windowsOptions", K::Msg(228), false),
            F(11, "seccompProfile", K::Msg(194), false),
            F(12, "appArmorProfile", K::Msg(53), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Service",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "spec", K::Msg(205), false),
            F(3, "status", K::Msg(206), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ServiceAccount",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "secrets", K::Msg(153), true),
            F(3, "imagePullSecrets", K::Msg(125), true),
            F(4, "automountServiceAccountToken", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ServiceAccountTokenProjection",
        fields: &[
            F(1, "audience", K::Str, false),
            F(2, "expirationSeconds", K::Int, false),
            F(3, "path", K::Str, false),
            F(4, "user", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ServicePort",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "protocol", K::Str, false),
            F(3, "port", K::Int, false),
            F(4, "targetPort", K::IntOrString, false),
            F(5, "nodePort", K::Int, false),
            F(6, "appProtocol", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ServiceSpec",
        fields: &[
            F(1, "ports", K::Msg(204), true),
            F(2, "selector", K::Map(&K::Str, &K::Str), false),
            F(3, "clusterIP", K::Str, false),
            F(4, "type", K::Str, false),
            F(5, "externalIPs", K::Str, true),
            F(7, "sessionAffinity", K::Str, false),
            F(8, "loadBalancerIP", K::Str, false),
            F(9, "loadBalancerSourceRanges", K::Str, true),
            F(10, "externalName", K::Str, false),
            F(11, "externalTrafficPolicy", K::Str, false),
            F(12, "healthCheckNodePort", K::Int, false),
            F(13, "publishNotReadyAddresses", K::Bool, false),
            F(14, "sessionAffinityConfig", K::Msg(207), false),
            F(17, "ipFamilyPolicy", K::Str, false),
            F(18, "clusterIPs", K::Str, true),
            F(19, "ipFamilies", K::Str, true),
            F(20, "allocateLoadBalancerNodePorts", K::Bool, false),
            F(21, "loadBalancerClass", K::Str, false),
            F(22, "internalTrafficPolicy", K::Str, false),
            F(23, "trafficDistribution", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.ServiceStatus",
        fields: &[
            F(1, "loadBalancer", K::Msg(124), false),
            F(2, "conditions", K::Msg(245), true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.SessionAffinityConfig",
        fields: &[F(1, "clientIP", K::Msg(62), false)],
    },
    Message {
        name: "k8s.io.api.core.v1.SleepAction",
        fields: &[F(1, "seconds", K::Int, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.StorageOSVolumeSource",
        fields: &[
            F(1, "volumeName", K::Str, false),
            F(2, "volumeNamespace", K::Str, false),
            F(3, "fsType", K::Str, false),
            F(4, "readOnly", K::Bool, false),
            F(5, "secretRef", K::Msg(125), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Sysctl",
        fields: &[F(1, "name", K::Str, false), F(2, "value", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.core.v1.TCPSocketAction",
        fields: &[
            F(1, "port", K::IntOrString, false),
            F(2, "host", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Taint",
        fields: &[
            F(1, "key", K::Str, false),
            F(2, "value", K::Str, false),
            F(3, "effect", K::Str, false),
            F(4, "timeAdded", K::Time, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Toleration",
        fields: &[
            F(1, "key", K::Str, false),
            F(2, "operator", K::Str, false),
            F(3, "value", K::Str, false),
            F(4, "effect", K::Str, false),
            F(5, "tolerationSeconds", K::Int, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.TopologySpreadConstraint",
        fields: &[
            F(1, "maxSkew", K::Int, false),
            F(2, "topologyKey", K::Str, false),
            F(3, "whenUnsatisfiable", K::Str, false),
            F(4, "labelSelector", K::Msg(248), false),
            F(5, "minDomains", K::Int, false),
            F(6, "nodeAffinityPolicy", K::Str, false),
            F(7, "nodeTaintsPolicy", K::Str, false),
            F(8, "matchLabelKeys", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.TypedLocalObjectReference",
        fields: &[
            F(1, "apiGroup", K::Str, false),
            F(2, "kind", K::Str, false),
            F(3, "name", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.TypedObjectReference",
        fields: &[
            F(1, "apiGroup", K::Str, false),
            F(2, "kind", K::Str, false),
            F(3, "name", K::Str, false),
            F(4, "namespace", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.Volume",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "volumeSource", K::Msg(224), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.VolumeDevice",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "devicePath", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.VolumeHealthCondition",
        fields: &[
            F(1, "status", K::Str, false),
            F(2, "reason", K::Str, false),
            F(3, "message", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.VolumeMount",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "readOnly", K::Bool, false),
            F(3, "mountPath", K::Str, false),
            F(4, "subPath", K::Str, false),
            F(5, "mountPropagation", K::Str, false),
            F(6, "subPathExpr", K::Str, false),
            F(7, "recursiveReadOnly", K::Str, false),
            F(8, "bindMountOptions", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.VolumeMountStatus",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "mountPath", K::Str, false),
            F(3, "readOnly", K::Bool, false),
            F(4, "recursiveReadOnly", K::Str, false),
            F(5, "volumeStatus", K::Msg(225), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.VolumeProjection",
        fields: &[
            F(1, "secret", K::Msg(198), false),
            F(2, "downwardAPI", K::Msg(84), false),
            F(3, "configMap", K::Msg(68), false),
            F(4, "serviceAccountToken", K::Msg(203), false),
            F(5, "clusterTrustBundle", K::Msg(63), false),
            F(6, "podCertificate", K::Msg(162), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.VolumeResourceRequirements",
        fields: &[
            F(1, "limits", K::Map(&K::Str, &K::Quantity), false),
            F(2, "requests", K::Map(&K::Str, &K::Quantity), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.VolumeSource",
        fields: &[
            F(1, "hostPath", K::Msg(115), false),
            F(2, "emptyDir", K::Msg(87), false),
            F(3, "gcePersistentDisk", K::Msg(107), false),
            F(4, "awsElasticBlockStore", K::Msg(51), false),
            F(5, "gitRepo", K::Msg(109), false),
            F(6, "secret", K::Msg(199), false),
            F(7, "nfs", K::Msg(126), false),
            F(8, "iscsi", K::Msg(116), false),
            F(9, "glusterfs", K::Msg(110), false),
            F(10, "persistentVolumeClaim", K::Msg(156), false),
            F(11, "rbd", K::Msg(186), false),
            F(12, "flexVolume", K::Msg(105), false),
            F(13, "cinder", K::Msg(61), false),
            F(14, "cephfs", K::Msg(60), false),
            F(15, "flocker", K::Msg(106), false),
            F(16, "downwardAPI", K::Msg(86), false),
            F(17, "fc", K::Msg(103), false),
            F(18, "azureFile", K::Msg(56), false),
            F(19, "configMap", K::Msg(69), false),
            F(20, "vsphereVolume", K::Msg(226), false),
            F(21, "quobyte", K::Msg(185), false),
            F(22, "azureDisk", K::Msg(55), false),
            F(23, "photonPersistentDisk", K::Msg(157), false),
            F(24, "portworxVolume", K::Msg(180), false),
            F(25, "scaleIO", K::Msg(193), false),
            F(26, "projected", K::Msg(184), false),
            F(27, "storageos", K::Msg(209), false),
            F(28, "csi", K::Msg(58), false),
            F(29, "ephemeral", K::Msg(97), false),
            F(30, "image", K::Msg(117), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.VolumeStatus",
        fields: &[F(1, "image", K::Msg(118), false)],
    },
    Message {
        name: "k8s.io.api.core.v1.VsphereVirtualDiskVolumeSource",
        fields: &[
            F(1, "volumePath", K::Str, false),
            F(2, "fsType", K::Str, false),
            F(3, "storagePolicyName", K::Str, false),
            F(4, "storagePolicyID", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.WeightedPodAffinityTerm",
        fields: &[
            F(1, "weight", K::Int, false),
            F(2, "podAffinityTerm", K::Msg(160), false),
        ],
    },
    Message {
        name: "k8s.io.api.core.v1.WindowsSecurityContextOptions",
        fields: &[
            F(1, "gmsaCredentialSpecName", K::Str, false),
            F(2, "gmsaCredentialSpec", K::Str, false),
            F(3, "runAsUserName", K::Str, false),
            F(4, "hostProcess", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.discovery.v1.Endpoint",
        fields: &[
            F(1, "addresses", K::Str, true),
            F(2, "conditions", K::Msg(230), false),
            F(3, "hostname", K::Str, false),
            F(4, "targetRef", K::Msg(153), false),
            F(5, "deprecatedTopology", K::Map(&K::Str, &K::Str), false),
            F(6, "nodeName", K::Str, false),
            F(7, "zone", K::Str, false),
            F(8, "hints", K::Msg(231), false),
        ],
    },
    Message {
        name: "k8s.io.api.discovery.v1.EndpointConditions",
        fields: &[
            F(1, "ready", K::Bool, false),
            F(2, "serving", K::Bool, false),
            F(3, "terminating", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.api.discovery.v1.EndpointHints",
        fields: &[
            F(1, "forZones", K::Msg(235), true),
            F(2, "forNodes", K::Msg(234), true),
        ],
    },
    Message {
        name: "k8s.io.api.discovery.v1.EndpointPort",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "protocol", K::Str, false),
            F(3, "port", K::Int, false),
            F(4, "appProtocol", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.discovery.v1.EndpointSlice",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "endpoints", K::Msg(229), true),
            F(3, "ports", K::Msg(232), true),
            F(4, "addressType", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.discovery.v1.ForNode",
        fields: &[F(1, "name", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.discovery.v1.ForZone",
        fields: &[F(1, "name", K::Str, false)],
    },
    Message {
        name: "k8s.io.api.policy.v1.Eviction",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "deleteOptions", K::Msg(246), false),
        ],
    },
    Message {
        name: "k8s.io.api.rbac.v1.AggregationRule",
        fields: &[F(1, "clusterRoleSelectors", K::Msg(248), true)],
    },
    Message {
        name: "k8s.io.api.rbac.v1.ClusterRole",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "rules", K::Msg(240), true),
            F(3, "aggregationRule", K::Msg(237), false),
        ],
    },
    Message {
        name: "k8s.io.api.rbac.v1.ClusterRoleBinding",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "subjects", K::Msg(244), true),
            F(3, "roleRef", K::Msg(243), false),
        ],
    },
    Message {
        name: "k8s.io.api.rbac.v1.PolicyRule",
        fields: &[
            F(1, "verbs", K::Str, true),
            F(2, "apiGroups", K::Str, true),
            F(3, "resources", K::Str, true),
            F(4, "resourceNames", K::Str, true),
            F(5, "nonResourceURLs", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.api.rbac.v1.Role",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "rules", K::Msg(240), true),
        ],
    },
    Message {
        name: "k8s.io.api.rbac.v1.RoleBinding",
        fields: &[
            F(1, "metadata", K::Msg(251), false),
            F(2, "subjects", K::Msg(244), true),
            F(3, "roleRef", K::Msg(243), false),
        ],
    },
    Message {
        name: "k8s.io.api.rbac.v1.RoleRef",
        fields: &[
            F(1, "apiGroup", K::Str, false),
            F(2, "kind", K::Str, false),
            F(3, "name", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.api.rbac.v1.Subject",
        fields: &[
            F(1, "kind", K::Str, false),
            F(2, "apiGroup", K::Str, false),
            F(3, "name", K::Str, false),
            F(4, "namespace", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.apimachinery.pkg.apis.meta.v1.Condition",
        fields: &[
            F(1, "type", K::Str, false),
            F(2, "status", K::Str, false),
            F(3, "observedGeneration", K::Int, false),
            F(4, "lastTransitionTime", K::Time, false),
            F(5, "reason", K::Str, false),
            F(6, "message", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        fields: &[
            F(1, "gracePeriodSeconds", K::Int, false),
            F(2, "preconditions", K::Msg(253), false),
            F(3, "orphanDependents", K::Bool, false),
            F(4, "propagationPolicy", K::Str, false),
            F(5, "dryRun", K::Str, true),
            F(
                6,
                "ignoreStoreReadErrorWithClusterBreakingPotential",
                K::Bool,
                false,
            ),
        ],
    },
    Message {
        name: "k8s.io.apimachinery.pkg.apis.meta.v1.FieldSelectorRequirement",
        fields: &[
            F(1, "key", K::Str, false),
            F(2, "operator", K::Str, false),
            F(3, "values", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelector",
        fields: &[
            F(1, "matchLabels", K::Map(&K::Str, &K::Str), false),
            F(2, "matchExpressions", K::Msg(249), true),
        ],
    },
    Message {
        name: "k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement",
        fields: &[
            F(1, "key", K::Str, false),
            F(2, "operator", K::Str, false),
            F(3, "values", K::Str, true),
        ],
    },
    Message {
        name: "k8s.io.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry",
        fields: &[
            F(1, "manager", K::Str, false),
            F(2, "operation", K::Str, false),
            F(3, "apiVersion", K::Str, false),
            F(4, "time", K::Time, false),
            F(6, "fieldsType", K::Str, false),
            F(7, "fieldsV1", K::Raw, false),
            F(8, "subresource", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        fields: &[
            F(1, "name", K::Str, false),
            F(2, "generateName", K::Str, false),
            F(3, "namespace", K::Str, false),
            F(4, "selfLink", K::Str, false),
            F(5, "uid", K::Str, false),
            F(6, "resourceVersion", K::Str, false),
            F(7, "generation", K::Int, false),
            F(8, "creationTimestamp", K::Time, false),
            F(9, "deletionTimestamp", K::Time, false),
            F(10, "deletionGracePeriodSeconds", K::Int, false),
            F(11, "labels", K::Map(&K::Str, &K::Str), false),
            F(12, "annotations", K::Map(&K::Str, &K::Str), false),
            F(13, "ownerReferences", K::Msg(252), true),
            F(14, "finalizers", K::Str, true),
            F(17, "managedFields", K::Msg(250), true),
        ],
    },
    Message {
        name: "k8s.io.apimachinery.pkg.apis.meta.v1.OwnerReference",
        fields: &[
            F(1, "kind", K::Str, false),
            F(3, "name", K::Str, false),
            F(4, "uid", K::Str, false),
            F(5, "apiVersion", K::Str, false),
            F(6, "controller", K::Bool, false),
            F(7, "blockOwnerDeletion", K::Bool, false),
        ],
    },
    Message {
        name: "k8s.io.apimachinery.pkg.apis.meta.v1.Preconditions",
        fields: &[
            F(1, "uid", K::Str, false),
            F(2, "resourceVersion", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.apimachinery.pkg.runtime.TypeMeta",
        fields: &[
            F(1, "apiVersion", K::Str, false),
            F(2, "kind", K::Str, false),
        ],
    },
    Message {
        name: "k8s.io.apimachinery.pkg.runtime.Unknown",
        fields: &[
            F(1, "typeMeta", K::Msg(254), false),
            F(2, "raw", K::Bytes, false),
            F(3, "contentEncoding", K::Str, false),
            F(4, "contentType", K::Str, false),
        ],
    },
];
