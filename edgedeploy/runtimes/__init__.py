"""One module per inference engine (onnxruntime, MNN, LiteRT, ncnn, CoreML, torch) behind :mod:`.base`'s protocol.

Layer 4 (engines): imports the base layer and records only; imported by ``export`` (parity), measurement, the
API and commands. Each module registers itself under the name its registry ``RuntimeSpec`` gives.
"""
