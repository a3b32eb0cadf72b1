"""Infinipaint in the browser: a static page where a person paints inside the network.

    infinipaint export web --model weights/cpu --out site/   # the ONNX model, the page, the runtime
    infinipaint serve site/ [--port 8000]                      # http://127.0.0.1:8000/

`export web` (`commands.export_web`) writes the world model as ONNX (`infinipaint.export`) into
`site/model/`, Minipaint's reset screen as `site/first_frame.rgb` (the page's first frame), the page
(`site/index.html`, `site/app.js`, `site/actionstream.js`, `site/style.css`) and the WebAssembly
build of onnxruntime-web (`site/ort/`, from the npm lockfile in `npm/`). The page runs every step in
the browser (`app.js` says how); nothing is fetched from anywhere else at run time. `serve` serves a
site with the cross-origin isolation headers that let the WebAssembly runtime use threads.
"""
