"""scripts/execute_chapters.py: a finished tqdm bar is saved as the plain text of its last state."""

from __future__ import annotations

import importlib.util
import pathlib

import nbformat

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "execute_chapters.py"
spec = importlib.util.spec_from_file_location("execute_chapters", SCRIPT)
execute_chapters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(execute_chapters)


def test_finished_bar_is_stored_as_text_without_the_widget_view():
    view = {"model_id": "box", "version_major": 2, "version_minor": 0}
    bar = nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": view,
                                                        "text/plain": "train:   0%|          | 0/80 [00:00<?, ?it/s]"})
    printed = nbformat.v4.new_output("stream", name="stdout", text="done\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[bar, printed])])
    state = {"box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_l", "IPY_MODEL_b", "IPY_MODEL_r"]}},
             "l": {"state": {"value": "train: 100%"}}, "b": {"state": {"value": 80, "max": 80}},
             "r": {"state": {"value": " 80/80 [00:19&lt;00:00,  4.25it/s]"}}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    execute_chapters.finish_progress_bars(nb)
    out = nb.cells[0].outputs
    assert out[0]["data"] == {"text/plain": "train: 100%|██████████| 80/80 [00:19<00:00,  4.25it/s]"}
    assert out[1] == printed
