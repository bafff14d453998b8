"""Field tables of the built-in kinds the simulator decodes from Kubernetes protobuf.

client-go (1.32 and later) sends the typed clients' bodies as protobuf, and so does every
`kubectl create <kind>` subcommand; only dynamic clients (`apply`, `run`, `patch`) send
JSON. The tables give, per message, the field numbers of `k8s.io/api`'s generated protobuf
and the JSON names they carry (the protobuf names are the JSON names, but for
BoundObjectReference's `aPIVersion` and `uID`). Written by hand for the fields of the kinds
the simulator serves and `kubectl create` / `kubectl auth` produce; a field missing from a
table is refused by the decoder when it carries a value, never dropped silently.

Syntax, one field per comma: `NUMBER NAME TYPE` where TYPE is a scalar (`string`, `bytes`,
`bool`, `int32`, `int64`), a special (`Time`, `Quantity`, `IntOrString`, `FieldsV1`,
`ExtraValue`: a user's extra values, a string list in JSON) or a message name; `*TYPE` is
repeated, `{TYPE}` is a map from strings, a trailing `?` marks a Go pointer field (its zero
value was set on purpose and is kept: `replicas: 0`), and the name `^` inlines the message's
fields into the parent (Volume's VolumeSource, the LocalObjectReference of key selectors),
as the JSON form does; type `-` is read and dropped (a status: the server owns it, whatever
a create carries).
"""

from __future__ import annotations

from dataclasses import dataclass

SCALARS = frozenset({"string", "bytes", "bool", "int32", "int64"})
IGNORED = "-"  # status: the server sets it, whatever a create carries
SPECIALS = frozenset({"Time", "Quantity", "IntOrString", "FieldsV1", "ExtraValue"})

_TABLES = {
    # k8s.io/apimachinery/pkg/apis/meta/v1
    "ObjectMeta": "1 name string, 2 generateName string, 3 namespace string, 4 selfLink string,"
    " 5 uid string, 6 resourceVersion string, 7 generation int64, 8 creationTimestamp Time,"
    " 9 deletionTimestamp Time, 10 deletionGracePeriodSeconds int64?, 11 labels {string},"
    " 12 annotations {string}, 13 ownerReferences *OwnerReference, 14 finalizers *string,"
    " 17 managedFields *ManagedFieldsEntry",
    "OwnerReference": "5 apiVersion string, 1 kind string, 3 name string, 4 uid string,"
    " 6 controller bool?, 7 blockOwnerDeletion bool?",
    "ManagedFieldsEntry": "1 manager string, 2 operation string, 3 apiVersion string,"
    " 4 time Time, 6 fieldsType string, 7 fieldsV1 FieldsV1, 8 subresource string",
    "LabelSelector": "1 matchLabels {string}, 2 matchExpressions *LabelSelectorRequirement",
    "LabelSelectorRequirement": "1 key string, 2 operator string, 3 values *string",
    # k8s.io/api/core/v1
    "Namespace": "1 metadata ObjectMeta, 2 spec NamespaceSpec, 3 status -",
    "NamespaceSpec": "1 finalizers *string",
    "ConfigMap": "1 metadata ObjectMeta, 4 immutable bool?, 2 data {string}, 3 binaryData {bytes}",
    "Secret": "1 metadata ObjectMeta, 5 immutable bool?, 2 data {bytes}, 4 stringData {string},"
    " 3 type string",
    "ServiceAccount": "1 metadata ObjectMeta, 2 secrets *ObjectReference,"
    " 3 imagePullSecrets *LocalObjectReference, 4 automountServiceAccountToken bool?",
    "ObjectReference": "1 kind string, 2 namespace string, 3 name string, 4 uid string,"
    " 5 apiVersion string, 6 resourceVersion string, 7 fieldPath string",
    "LocalObjectReference": "1 name string",
    "TypedLocalObjectReference": "1 apiGroup string?, 2 kind string, 3 name string",
    "TypedObjectReference": "1 apiGroup string?, 2 kind string, 3 name string, 4 namespace string?",
    "Service": "1 metadata ObjectMeta, 2 spec ServiceSpec, 3 status -",
    "ServiceSpec": "1 ports *ServicePort, 2 selector {string}, 3 clusterIP string,"
    " 18 clusterIPs *string, 4 type string, 5 externalIPs *string, 7 sessionAffinity string,"
    " 8 loadBalancerIP string, 9 loadBalancerSourceRanges *string, 10 externalName string,"
    " 11 externalTrafficPolicy string, 12 healthCheckNodePort int32,"
    " 13 publishNotReadyAddresses bool, 19 ipFamilies *string, 17 ipFamilyPolicy string?,"
    " 20 allocateLoadBalancerNodePorts bool?, 21 loadBalancerClass string?,"
    " 22 internalTrafficPolicy string?, 23 trafficDistribution string?",
    "ServicePort": "1 name string, 2 protocol string, 6 appProtocol string?, 3 port int32,"
    " 4 targetPort IntOrString, 5 nodePort int32",
    "PersistentVolumeClaim": "1 metadata ObjectMeta, 2 spec PersistentVolumeClaimSpec, 3 status -",
    "PersistentVolumeClaimSpec": "1 accessModes *string, 4 selector LabelSelector,"
    " 2 resources VolumeResourceRequirements, 3 volumeName string,"
    " 5 storageClassName string?, 6 volumeMode string?, 7 dataSource TypedLocalObjectReference,"
    " 8 dataSourceRef TypedObjectReference, 9 volumeAttributesClassName string?",
    "VolumeResourceRequirements": "1 limits {Quantity}, 2 requests {Quantity}",
    "Pod": "1 metadata ObjectMeta, 2 spec PodSpec, 3 status -",
    "PodTemplateSpec": "1 metadata ObjectMeta, 2 spec PodSpec",
    "PodSpec": "1 volumes *Volume, 20 initContainers *Container, 2 containers *Container,"
    " 3 restartPolicy string, 4 terminationGracePeriodSeconds int64?,"
    " 5 activeDeadlineSeconds int64?, 6 dnsPolicy string, 7 nodeSelector {string},"
    " 8 serviceAccountName string, 9 serviceAccount string,"
    " 21 automountServiceAccountToken bool?, 10 nodeName string, 11 hostNetwork bool,"
    " 12 hostPID bool, 13 hostIPC bool, 14 securityContext PodSecurityContext,"
    " 15 imagePullSecrets *LocalObjectReference, 16 hostname string, 17 subdomain string,"
    " 19 schedulerName string, 22 tolerations *Toleration, 24 priorityClassName string,"
    " 25 priority int32?, 29 runtimeClassName string?, 30 enableServiceLinks bool?",
    "Container": "1 name string, 2 image string, 3 command *string, 4 args *string,"
    " 5 workingDir string, 6 ports *ContainerPort, 19 envFrom *EnvFromSource, 7 env *EnvVar,"
    " 8 resources ResourceRequirements, 24 restartPolicy string?, 9 volumeMounts *VolumeMount,"
    " 13 terminationMessagePath string, 20 terminationMessagePolicy string,"
    " 14 imagePullPolicy string, 15 securityContext SecurityContext, 16 stdin bool,"
    " 17 stdinOnce bool, 18 tty bool",
    "ContainerPort": "1 name string, 2 hostPort int32, 3 containerPort int32,"
    " 4 protocol string, 5 hostIP string",
    "EnvVar": "1 name string, 2 value string, 3 valueFrom EnvVarSource",
    "EnvVarSource": "1 fieldRef ObjectFieldSelector, 2 resourceFieldRef ResourceFieldSelector,"
    " 3 configMapKeyRef ConfigMapKeySelector, 4 secretKeyRef SecretKeySelector",
    "ObjectFieldSelector": "1 apiVersion string, 2 fieldPath string",
    "ResourceFieldSelector": "1 containerName string, 2 resource string, 3 divisor Quantity",
    "ConfigMapKeySelector": "1 ^ LocalObjectReference, 2 key string, 3 optional bool?",
    "SecretKeySelector": "1 ^ LocalObjectReference, 2 key string, 3 optional bool?",
    "EnvFromSource": "1 prefix string, 2 configMapRef ConfigMapEnvSource,"
    " 3 secretRef SecretEnvSource",
    "ConfigMapEnvSource": "1 ^ LocalObjectReference, 2 optional bool?",
    "SecretEnvSource": "1 ^ LocalObjectReference, 2 optional bool?",
    "ResourceRequirements": "1 limits {Quantity}, 2 requests {Quantity}",
    "VolumeMount": "1 name string, 2 readOnly bool, 7 recursiveReadOnly string?,"
    " 3 mountPath string, 4 subPath string, 5 mountPropagation string?, 6 subPathExpr string",
    "Volume": "1 name string, 2 ^ VolumeSource",
    "VolumeSource": "1 hostPath HostPathVolumeSource, 2 emptyDir EmptyDirVolumeSource,"
    " 6 secret SecretVolumeSource, 10 persistentVolumeClaim PersistentVolumeClaimVolumeSource,"
    " 19 configMap ConfigMapVolumeSource",
    "HostPathVolumeSource": "1 path string, 2 type string?",
    "EmptyDirVolumeSource": "1 medium string, 2 sizeLimit Quantity",
    "SecretVolumeSource": "1 secretName string, 2 items *KeyToPath, 3 defaultMode int32?,"
    " 4 optional bool?",
    "ConfigMapVolumeSource": "1 ^ LocalObjectReference, 2 items *KeyToPath,"
    " 3 defaultMode int32?, 4 optional bool?",
    "PersistentVolumeClaimVolumeSource": "1 claimName string, 2 readOnly bool",
    "KeyToPath": "1 key string, 2 path string, 3 mode int32?",
    "Toleration": "1 key string, 2 operator string, 3 value string, 4 effect string,"
    " 5 tolerationSeconds int64?",
    "SecurityContext": "1 capabilities Capabilities, 2 privileged bool?, 4 runAsUser int64?,"
    " 8 runAsGroup int64?, 5 runAsNonRoot bool?, 6 readOnlyRootFilesystem bool?,"
    " 7 allowPrivilegeEscalation bool?",
    "PodSecurityContext": "2 runAsUser int64?, 6 runAsGroup int64?, 3 runAsNonRoot bool?,"
    " 4 supplementalGroups *int64, 5 fsGroup int64?, 9 fsGroupChangePolicy string?",
    "Capabilities": "1 add *string, 2 drop *string",
    # k8s.io/api/rbac/v1
    "Role": "1 metadata ObjectMeta, 2 rules *PolicyRule",
    "ClusterRole": "1 metadata ObjectMeta, 2 rules *PolicyRule, 3 aggregationRule AggregationRule",
    "AggregationRule": "1 clusterRoleSelectors *LabelSelector",
    "PolicyRule": "1 verbs *string, 2 apiGroups *string, 3 resources *string,"
    " 4 resourceNames *string, 5 nonResourceURLs *string",
    "RoleBinding": "1 metadata ObjectMeta, 2 subjects *Subject, 3 roleRef RoleRef",
    "ClusterRoleBinding": "1 metadata ObjectMeta, 2 subjects *Subject, 3 roleRef RoleRef",
    "Subject": "1 kind string, 2 apiGroup string, 3 name string, 4 namespace string",
    "RoleRef": "1 apiGroup string, 2 kind string, 3 name string",
    # k8s.io/api/policy/v1
    "PodDisruptionBudget": "1 metadata ObjectMeta, 2 spec PodDisruptionBudgetSpec, 3 status -",
    "PodDisruptionBudgetSpec": "1 minAvailable IntOrString, 2 selector LabelSelector,"
    " 3 maxUnavailable IntOrString, 4 unhealthyPodEvictionPolicy string?",
    # k8s.io/api/apps/v1
    "Deployment": "1 metadata ObjectMeta, 2 spec DeploymentSpec, 3 status -",
    "DeploymentSpec": "1 replicas int32?, 2 selector LabelSelector, 3 template PodTemplateSpec,"
    " 4 strategy DeploymentStrategy, 5 minReadySeconds int32, 6 revisionHistoryLimit int32?,"
    " 7 paused bool, 9 progressDeadlineSeconds int32?",
    "DeploymentStrategy": "1 type string, 2 rollingUpdate RollingUpdateDeployment",
    "RollingUpdateDeployment": "1 maxUnavailable IntOrString, 2 maxSurge IntOrString",
    # k8s.io/api/networking/v1
    "Ingress": "1 metadata ObjectMeta, 2 spec IngressSpec, 3 status -",
    "IngressSpec": "4 ingressClassName string?, 1 defaultBackend IngressBackend,"
    " 2 tls *IngressTLS, 3 rules *IngressRule",
    "IngressBackend": "4 service IngressServiceBackend, 3 resource TypedLocalObjectReference",
    "IngressServiceBackend": "1 name string, 2 port ServiceBackendPort",
    "ServiceBackendPort": "1 name string, 2 number int32",
    "IngressRule": "1 host string, 2 ^ IngressRuleValue",
    "IngressRuleValue": "1 http HTTPIngressRuleValue",
    "HTTPIngressRuleValue": "1 paths *HTTPIngressPath",
    "HTTPIngressPath": "1 path string, 3 pathType string?, 2 backend IngressBackend",
    "IngressTLS": "1 hosts *string, 2 secretName string",
    # k8s.io/api/authorization/v1 (the review kinds: `kubectl auth can-i`, its `--list`)
    "SubjectAccessReview": "1 metadata ObjectMeta, 2 spec SubjectAccessReviewSpec, 3 status -",
    "LocalSubjectAccessReview": "1 metadata ObjectMeta, 2 spec SubjectAccessReviewSpec, 3 status -",
    "SelfSubjectAccessReview": "1 metadata ObjectMeta, 2 spec SelfSubjectAccessReviewSpec,"
    " 3 status -",
    "SelfSubjectRulesReview": "1 metadata ObjectMeta, 2 spec SelfSubjectRulesReviewSpec,"
    " 3 status -",
    "SubjectAccessReviewSpec": "1 resourceAttributes ResourceAttributes,"
    " 2 nonResourceAttributes NonResourceAttributes, 3 user string, 4 groups *string,"
    " 5 extra {ExtraValue}, 6 uid string",
    "SelfSubjectAccessReviewSpec": "1 resourceAttributes ResourceAttributes,"
    " 2 nonResourceAttributes NonResourceAttributes",
    "SelfSubjectRulesReviewSpec": "1 namespace string",
    "ResourceAttributes": "1 namespace string, 2 verb string, 3 group string, 4 version string,"
    " 5 resource string, 6 subresource string, 7 name string,"
    " 8 fieldSelector FieldSelectorAttributes, 9 labelSelector LabelSelectorAttributes",
    "FieldSelectorAttributes": "1 rawSelector string, 2 requirements *FieldSelectorRequirement",
    "FieldSelectorRequirement": "1 key string, 2 operator string, 3 values *string",
    "LabelSelectorAttributes": "1 rawSelector string, 2 requirements *LabelSelectorRequirement",
    "NonResourceAttributes": "1 path string, 2 verb string",
    # k8s.io/api/authentication/v1 (TokenReview, `kubectl auth whoami`, `kubectl create token`)
    "TokenReview": "1 metadata ObjectMeta, 2 spec TokenReviewSpec, 3 status -",
    "TokenReviewSpec": "1 token string, 2 audiences *string",
    "SelfSubjectReview": "1 metadata ObjectMeta, 2 status -",
    "TokenRequest": "1 metadata ObjectMeta, 2 spec TokenRequestSpec, 3 status -",
    "TokenRequestSpec": "1 audiences *string, 4 expirationSeconds int64?,"
    " 3 boundObjectRef BoundObjectReference",
    "BoundObjectReference": "1 kind string, 2 apiVersion string, 3 name string, 4 uid string",
}

# (apiVersion, kind) -> message; the kinds whose bodies may come as protobuf.
KINDS = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "Secret"): "Secret",
    ("v1", "ServiceAccount"): "ServiceAccount",
    ("v1", "Service"): "Service",
    ("v1", "PersistentVolumeClaim"): "PersistentVolumeClaim",
    ("v1", "Pod"): "Pod",
    ("rbac.authorization.k8s.io/v1", "Role"): "Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "ClusterRoleBinding",
    ("policy/v1", "PodDisruptionBudget"): "PodDisruptionBudget",
    ("apps/v1", "Deployment"): "Deployment",
    ("networking.k8s.io/v1", "Ingress"): "Ingress",
    ("authorization.k8s.io/v1", "SubjectAccessReview"): "SubjectAccessReview",
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): "LocalSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "SelfSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "SelfSubjectRulesReview",
    ("authentication.k8s.io/v1", "TokenReview"): "TokenReview",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "SelfSubjectReview",
    ("authentication.k8s.io/v1", "TokenRequest"): "TokenRequest",
}


@dataclass(frozen=True)
class Field:
    json: str  # "^" inlines the message into its parent
    type: str
    repeated: bool = False
    map: bool = False
    pointer: bool = False


def _parse(spec: str) -> dict[int, Field]:
    fields: dict[int, Field] = {}
    for item in spec.split(","):
        number, name, kind = item.split()
        pointer = kind.endswith("?")
        kind = kind.rstrip("?")
        repeated = kind.startswith("*")
        is_map = kind.startswith("{")
        kind = kind.strip("*{}")
        if kind not in SCALARS | SPECIALS | {IGNORED} and kind not in _TABLES:
            raise ValueError(f"unknown type {kind}")
        fields[int(number)] = Field(name, kind, repeated, is_map, pointer)
    return fields


MESSAGES: dict[str, dict[int, Field]] = {name: _parse(spec) for name, spec in _TABLES.items()}
