"""Names shared by the API types, the builders and the operator: group, version, labels."""

GROUP = "toque.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "toque"

FIELD_MANAGER = "toque-operator"
# Annotations kopf keeps its handler progress in.
KOPF_PREFIX = f"operator.{GROUP}"

LABEL_TRAININGJOB = f"{GROUP}/trainingjob"
LABEL_TRAININGJOB_UID = f"{GROUP}/trainingjob-uid"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"

DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_BACKOFF_LIMIT = 2
TERMINATION_MESSAGE_PATH = "/dev/termination-log"

# ModelVersion serving: pods carry these so the per-model Service, Prometheus and the
# operator's watches can find them.
LABEL_MODEL = f"{GROUP}/model"
LABEL_MODELVERSION = f"{GROUP}/modelversion"
LABEL_MODEL_VERSION = f"{GROUP}/model-version"
# The per-model Service selects only pods the operator admitted ("on").
LABEL_TRAFFIC = f"{GROUP}/traffic"
ANNOTATION_MODEL_NAME = f"{GROUP}/model-name"
ANNOTATION_MODELVERSION_NAME = f"{GROUP}/modelversion-name"
# Manual control: "<verb>[:<token>]", handled once per distinct value.
ANNOTATION_ACTION = f"{GROUP}/action"
ACTIONS = ("promote", "abort", "rollback", "resume")
