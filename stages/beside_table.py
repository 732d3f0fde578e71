"""DVC stage ``beside_table`` of the pipelines beside the paper's (fashion/dvc.yaml, depth/dvc.yaml):
the pipeline's own table from its ``aggregate`` output (and its ``bias`` output, when it has one):
each model's test accuracy with its interval, the paired gaps, the verdict (none: another dataset
or another network), the published figures beside them, the bias check per layer; written as a
Markdown table (``beside.out.table_md``) and a page (``beside.out.page_md``, ``page_html``).

    EQSPIKE_PARAMS=fashion/params.yaml python -m stages.beside_table
    EQSPIKE_PARAMS=depth/params.yaml python -m stages.beside_table
"""

from __future__ import annotations

import sys

from pipeline.analysis import beside, report
from pipeline.config import Config
from pipeline.core.io import atomic_write, read_json
from runner.config import OWN_STAGES, REPO, own_experiment, params_file
from runner.stage import stage_main
from runner.tracking import Run


def worker(cfg: Config, run: Run) -> None:
    out = cfg.beside.out
    if not (out.table_md and out.page_md and out.page_html):
        raise ValueError(f"beside.out: {params_file()} names no table or page (run it with the params of a "
                         "pipeline beside the paper's: EQSPIKE_PARAMS=fashion/params.yaml or depth/params.yaml)")
    name = own_experiment(params_file())
    agg = read_json(REPO / cfg.aggregate.out.detail, f"{name}/dvc.yaml:aggregate")
    bias_path = REPO / cfg.bias.out.detail
    bias = read_json(bias_path, f"{name}/dvc.yaml:bias") if "bias" in OWN_STAGES[name] else None
    sizes = {m: cfg.model(m).sizes for m in agg["summaries"]}
    n_train = cfg.data.n_train or cfg.data.train_images.shape[0]
    scale = (f"Dataset {cfg.data.name}: {n_train - cfg.data.validation:,} training examples, "
             f"{cfg.data.n_test or cfg.data.test_images.shape[0]:,} test examples; seeds {list(agg['seeds'])}.")
    blocks = beside.blocks(cfg.beside, agg, sizes, scale, bias)
    table = beside.markdown_table(agg, sizes)
    atomic_write(REPO / out.table_md, lambda p: p.write_text(table))
    atomic_write(REPO / out.page_md, lambda p: p.write_text(report.to_markdown(blocks)))
    html_path = REPO / out.page_html
    atomic_write(html_path, lambda p: p.write_text(report.to_html(blocks, cfg.beside.title, html_path.parent)))
    for path in (out.table_md, out.page_md, out.page_html):
        run.artifact(REPO / path)
    print(table)


main = stage_main("beside_table", worker)

if __name__ == "__main__":
    sys.exit(main())
