"""TensorRT engines per device: building (Polygraphy), the engine store and manifests."""
