from eval.recipes import RecipesConfig, study, table


def test_recipe_study_on_tiny_model():
    cfg = RecipesConfig(model="tiny-random", device="cpu", lengths=[6], n_texts=2,
                        candidates=["paper", "default"], max_steps=150, mlflow=False)
    rep = study(cfg, log=lambda *_: None)
    rows = rep["results"]
    assert {(r["candidate"], r["source"]) for r in rows} == {
        (c, s) for c in ("paper", "default") for s in ("britannica", "random-words")}
    for r in rows:
        assert 0 <= r["solved_frac"] <= 1 and r["median_steps"] <= 150
        assert len(r["steps"]) == 2
    assert "| default | 6 |" in table(rows)
