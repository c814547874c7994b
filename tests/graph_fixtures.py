"""Graph files the tests share: the issue's minimal example, exactly as written."""

MINI_YAML = """\
name: mini
services:
  - name: edge
    routes:
      - path: /buy/{order_id}
        method: POST
        entry: true                 # the traffic generator sends here
        script:
          - sleep: {ms: [20, 50]}   # uniform, scaled by FAKESVC_LATENCY_SCALE; or a number
          - call: {service: pricing, path: /price/{order_id}, timeout_s: 1.0}
          - parallel:
              - call: {service: stock, path: /stock/{order_id}, timeout_s: 1.0}
              - call: {service: ads, path: /ads/{order_id}, timeout_s: 0.3, on_error: ignore}
  - name: pricing
    routes:
      - path: /price/{order_id}
        method: GET
        script: [{sleep: {ms: 5}}]
  - name: stock
    routes: [{path: /stock/{order_id}, method: GET, script: [{sleep: {ms: [5, 10]}}]}]
  - name: ads
    routes: [{path: /ads/{order_id}, method: GET, script: [{sleep: {ms: 2}}]}]
"""
