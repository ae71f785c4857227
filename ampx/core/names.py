"""The API's names, in a module that imports nothing: listing tasks must not load the models."""

GROUP = "ampx.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AmpTask"
PLURAL = "amptasks"
OWNER_LABEL = "ampx.dev/owner"
