"""
    HGFBridge

Hugging Face models as Flux layers, sharing hgf-bridge's Python artifact store and checkpoint I/O.
"""
module HGFBridge

end # module
