"""An OpenAI-compatible embedding server: ``xlembed serve`` (needs the ``serve`` extra: pip install 'xlembed[serve]').

    from xlembed import LoadSpec
    from xlembed.serve import ServeConfig, serve
    serve({"multilingual-e5-small": LoadSpec("multilingual-e5-small", precision="int8")}, ServeConfig(port=8080))
"""

from .app import create_app
from .config import ServeConfig, read_api_keys
from .server import model_table, serve

__all__ = ["ServeConfig", "create_app", "model_table", "read_api_keys", "serve"]
