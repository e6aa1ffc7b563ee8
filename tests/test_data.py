import pytest

from labkit import data


def test_every_data_set_has_a_card_and_its_files():
    for name in data.DATASETS:
        assert data.source_files(name)
        c = data.CARDS[name]
        assert c.source and c.licence and c.about


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(data.DataError, match="known data sets: wikipedia, wiki-char, lee"):
        data.load("imdb")


def test_card_prints_source_licence_and_size(capsys):
    text = data.card("simlex999")
    assert "999 English word pairs" in text and "CC BY 4.0" in text
    assert capsys.readouterr().out.strip() == text


def test_wiki_char_is_exactly_the_speedrun_data():
    train, val = data.wiki_char_text()
    text = train + val
    assert (len(text), len(set(text))) == (3_104_722, 462)
    assert len(train) == int(len(text) * 0.9)
    assert text.lstrip().startswith("'''Anarchism'''")
    ds = data.load("wiki-char")
    assert ds["validation"][0]["text"] == val


def test_wikipedia_pages():
    ds = data.load("wikipedia")
    assert ds.num_rows == 105 and ds[0]["title"] == "Anarchism"
    assert min(len(t) for t in list(ds["text"])) > 500


def test_labelled_splits_are_stratified_deterministic_and_disjoint():
    mr = data.load("movie-reviews")
    assert (mr["train"].num_rows, mr["test"].num_rows) == (160, 40)
    assert sum(list(mr["test"]["label"])) == 20 and mr["train"].features["label"].names == ["negative", "positive"]
    assert data.load("movie-reviews")["test"]["text"] == list(mr["test"]["text"])
    assert data.load("movie-reviews", seed=1)["test"]["text"] != list(mr["test"]["text"])
    assert not set(list(mr["train"]["text"])) & set(list(mr["test"]["text"]))
    assert "i know this because" in " ".join(list(mr["train"]["text"]) + list(mr["test"]["text"]))  # cp1252 text decoded


def test_chinese_reviews_are_deduplicated_before_splitting():
    zh = data.load("zh-reviews")
    sizes = {k: v.num_rows for k, v in zh.items()}
    assert sizes == {"train": 13890, "validation": 1736, "test": 1737}
    texts = list(zh["train"]["text"]) + list(zh["validation"]["text"]) + list(zh["test"]["text"])
    assert len(texts) == len(set(texts)) == 17363
    labels = list(zh["train"]["label"]) + list(zh["validation"]["label"]) + list(zh["test"]["label"])
    assert (sum(labels), len(labels) - sum(labels)) == (8332, 9031)


def test_peoples_daily_gold_segmentation():
    pd_ = data.load("peoples-daily")
    assert pd_.num_rows == 19484
    row = pd_[1]
    assert row["words"][:3] == ["中共中央", "总书记", "、"] and row["text"] == "".join(row["words"])
    assert len(row["words"]) == len(row["tags"]) and row["tags"][0] == "nt"


def test_word_benchmarks_and_analogies():
    an = data.load("analogies")
    assert an.num_rows == 19544 and an[0] == {"section": "capital-common-countries", "a": "Athens",
                                               "b": "Greece", "c": "Baghdad", "d": "Iraq"}
    sl = data.load("simlex999")
    assert sl.num_rows == 999 and sl[0] == {"word1": "old", "word2": "new", "score": 1.58}
    assert data.load("wordsim353").num_rows == 353


def test_countries_and_digits():
    c = data.load("countries").to_pandas().set_index("name")
    assert c.loc["France", "capital"] == "Paris" and "DEU" in c.loc["France", "borders"]
    assert c.loc["Japan", "region"] == "Asia" and len(c) > 240
    d = data.load("digits")
    assert (d["train"].num_rows, d["test"].num_rows) == (1437, 360)
    img = d["train"][0]["image"]
    assert len(img) == 8 and len(img[0]) == 8 and 0 <= max(max(r) for r in img) <= 16


def test_dialogues_are_turn_pairs_in_two_languages():
    d = data.load("dialogues").to_pandas()
    assert (d.language == "en").sum() == 2306 and (d.language == "zh").sum() == 552
    trivia = d[(d.language == "en") & (d.category == "trivia")]
    assert trivia.iloc[0].to_dict() == {"language": "en", "category": "trivia",
                                        "prompt": "Who was the 37th President of the United States?",
                                        "reply": "Richard Nixon"}
    assert (d.prompt.str.len() > 0).all() and (d.reply.str.len() > 0).all()


def test_read_labelled_csv(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("text,label\nnice film,1\n\"bad, really\",0\n", encoding="utf-8")
    assert data.read_labelled_csv(good) == (["nice film", "bad, really"], [1, 0])
    bad_cols = tmp_path / "cols.csv"
    bad_cols.write_text("sentence,y\nhi,1\n")
    with pytest.raises(data.EvalFileError, match=r"lacks column\(s\) \['text', 'label'\]"):
        data.read_labelled_csv(bad_cols)
    bad_label = tmp_path / "lab.csv"
    bad_label.write_text("text,label\nhi,pos\n")
    with pytest.raises(data.EvalFileError, match="line 2: 'pos'"):
        data.read_labelled_csv(bad_label)
    with pytest.raises(data.EvalFileError, match="no file at"):
        data.read_labelled_csv(tmp_path / "missing.csv")


def _csv(tmp_path, content, name="r.csv"):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    return p


def test_read_labelled_csv_names_file_line_and_column(tmp_path):
    with pytest.raises(data.EvalFileError, match=r"c\.csv: 1 problem\(s\): line 2: 3 fields where the header has 2; put a text"):
        data.read_labelled_csv(_csv(tmp_path, "text,label\ngreat, fun film,1\nbad,0\n", "c.csv"))
    # A quoted text over two lines: the bad label is on file line 4, not row 3.
    with pytest.raises(data.EvalFileError, match=r"line 4: 'x' in column 2 \(label\)"):
        data.read_labelled_csv(_csv(tmp_path, 'text,label\n"line one\nline two",1\nok,x\n'))
    with pytest.raises(data.EvalFileError, match=r"line 2: empty text in column 2 \(text\)"):
        data.read_labelled_csv(_csv(tmp_path, "label,text\n1, \n"))
    with pytest.raises(data.EvalFileError, match="separated by ';'"):
        data.read_labelled_csv(_csv(tmp_path, "text;label\nok;1\n"))
    with pytest.raises(data.EvalFileError, match="and 2 more"):
        data.read_labelled_csv(_csv(tmp_path, "text,label\n" + "".join(f"t{i},pos\n" for i in range(7))))
    # Blank lines are skipped, extra columns are allowed, column order is free.
    assert data.read_labelled_csv(_csv(tmp_path, "id,label,text\n7,1,nice\n\n8,0,\"bad, really\"\n")) == (
        ["nice", "bad, really"], [1, 0])
