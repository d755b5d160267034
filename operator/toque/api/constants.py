"""Names shared by the API types, the builders and the operator: group, version, labels."""

GROUP = "toque.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "toque"

FIELD_MANAGER = "toque-operator"

LABEL_TRAININGJOB = f"{GROUP}/trainingjob"
LABEL_TRAININGJOB_UID = f"{GROUP}/trainingjob-uid"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"

DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_BACKOFF_LIMIT = 2
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
