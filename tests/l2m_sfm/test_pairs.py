import numpy as np
import pytest
from PIL import Image

from l2m.config import ConfigError
from l2m_sfm import pairs


def test_exhaustive_count_and_format(tmp_path):
    names = [f"{i:03d}.jpg" for i in range(12)]
    out = pairs.main({"method": "exhaustive"}, names, tmp_path / "p.txt")
    text = out.read_text()
    assert not text.endswith("\n") and "\n\n" not in text
    assert len(text.splitlines()) == 12 * 11 // 2
    assert text.splitlines()[0] == "000.jpg 001.jpg"


def test_sequential_window_per_folder_and_quadratic(tmp_path):
    names = [f"{i:02d}.jpg" for i in range(10)]
    p = pairs.parse_pairs(pairs.main(pairs.conf_from_string("sequential:3"), names, tmp_path / "s.txt"))
    assert len(p) == 3 * 10 - (1 + 2 + 3)  # 24: the last 3 images have fewer successors
    assert ("00.jpg", "03.jpg") in p and ("00.jpg", "04.jpg") not in p
    q = pairs.parse_pairs(pairs.main({"method": "sequential", "window": 3, "quadratic_overlap": True},
                                     names, tmp_path / "q.txt"))
    assert ("00.jpg", "04.jpg") in q and len(q) == len(p) + 6  # offset 4 adds pairs (0..5, +4)
    two = [f"a/{i}.jpg" for i in range(4)] + [f"b/{i}.jpg" for i in range(4)]
    s = pairs.parse_pairs(pairs.main({"method": "sequential", "window": 2}, two, tmp_path / "t.txt"))
    assert len(s) == 2 * 5 and all(x[0][0] == x[1][0] for x in s)  # never across folders


def test_conf_from_string():
    assert pairs.conf_from_string("exhaustive") == {"method": "exhaustive"}
    assert pairs.conf_from_string("sequential:5") == {"method": "sequential", "window": 5}
    assert pairs.conf_from_string("retrieval:20") == {"method": "retrieval", "num_matched": 20}
    assert pairs.conf_from_string("file:x/p.txt") == {"method": "file", "path": "x/p.txt"}
    for bad in ("vocab:3", "sequential:x", "sequential:0", "file:", "exhaustive:3"):
        with pytest.raises(ConfigError):
            pairs.conf_from_string(bad)
    with pytest.raises(ConfigError, match="pairs.windw"):
        pairs.main({"method": "sequential", "windw": 3}, ["a", "b"], "unused.txt")


def test_parse_pairs_dedup_and_errors(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("a.jpg b.jpg\nb.jpg a.jpg\nc/d.jpg a.jpg\na.jpg a.jpg\n\n")
    assert pairs.parse_pairs(f) == [("a.jpg", "b.jpg"), ("c/d.jpg", "a.jpg")]
    with pytest.raises(pairs.PairFileError, match="not in the image folder: c/d.jpg"):
        pairs.parse_pairs(f, ["a.jpg", "b.jpg"])
    f.write_text("a.jpg b.jpg\n\na.jpg c.jpg\n")
    with pytest.raises(pairs.PairFileError, match="line 2"):
        pairs.parse_pairs(f)
    f.write_text("a.jpg b.jpg x\n")
    with pytest.raises(pairs.PairFileError, match="line 1: expected 2 .* 3 token"):
        pairs.parse_pairs(f)
    f.write_text("a.jpg b.jpg\nb.jpg c.jpg")
    out = pairs.main({"method": "file", "path": str(f)}, ["a.jpg", "b.jpg", "c.jpg"], tmp_path / "o.txt")
    assert out.read_text() == "a.jpg b.jpg\nb.jpg c.jpg"


def test_cli(tmp_path, capsys):
    img = tmp_path / "imgs"
    img.mkdir()
    for i in range(5):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(img / f"{i}.png")
    (img / "bad.jpg").write_bytes(b"")
    assert pairs.cli(["--images", str(img), "--pairs", "sequential:2", "--output", str(tmp_path / "p.txt")]) == 0
    assert "7 pairs of 5 images" in capsys.readouterr().out


def test_vlad_retrieval_pairs_similar_images(tmp_path):
    """Two textures, three crops of each: retrieval:2 must pair crops of the same texture only."""
    from l2m_sfm import retrieval

    rng = np.random.default_rng(0)
    img = tmp_path / "imgs"
    img.mkdir()
    for t in range(2):
        base = np.array(Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).resize((256, 192)))
        if t:
            base = np.ascontiguousarray(np.clip(base.astype(int) // 64 * 64 + 32, 0, 255).astype(np.uint8))
        for c in range(3):
            Image.fromarray(base[8 * c: 8 * c + 160, 10 * c: 10 * c + 224]).save(img / f"t{t}_{c}.png")
    names = sorted(p.name for p in img.iterdir())
    out = pairs.main({"method": "retrieval", "num_matched": 2, "retrieval": {"num_clusters": 8}}, names,
                     tmp_path / "p.txt", image_dir=img)
    got = pairs.parse_pairs(out)
    assert len(got) == 6 and all(a[:2] == b[:2] for a, b in got)
    assert (tmp_path / "p-global-descriptors.h5").exists()  # local descriptors cached
    desc = retrieval.global_descriptors({"num_clusters": 8}, img, names, tmp_path / "p-global-descriptors.h5")
    assert desc.shape == (6, 8 * 64) and np.allclose(np.linalg.norm(desc, axis=1), 1, atol=1e-5)
    seq = pairs.main({"method": "sequential", "window": 1, "loop_closure_k": 1, "retrieval": {"num_clusters": 8}},
                     names, tmp_path / "p.txt", image_dir=img)  # same stem: reuses the descriptor cache
    assert len(pairs.parse_pairs(seq)) >= 5


def test_retrieval_pairs_in_row_blocks_equal_the_full_similarity_matrix():
    from l2m_sfm import retrieval

    rng = np.random.default_rng(0)
    desc = rng.normal(size=(300, 64)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    names = [f"{i:03d}.jpg" for i in range(300)]
    full = retrieval.pairs_from_descriptors(names, desc, 7, block=300)
    assert retrieval.pairs_from_descriptors(names, desc, 7, block=17) == full
    sim = desc @ desc.T
    np.fill_diagonal(sim, -np.inf)
    assert (names[0], names[int(np.argmax(sim[0]))]) in full and len(full) >= 300 * 7 // 2


@pytest.mark.parametrize("name", ["IMG 0001.jpg", "Été ü/写真 2.jpg", "100%.jpg", "a%20b.jpg", "tab\there.png",
                                  "nbsp\u00a0x.jpg", "plain/view_00.jpg"])
def test_names_with_whitespace_round_trip_through_pair_files(tmp_path, name):
    from l2m_sfm.pairs import decode_name, encode_name

    token = encode_name(name)
    assert decode_name(token) == name and token.split() == [token]
    assert (token == name) == (not any(c.isspace() or c == "%" for c in name))  # other names stay as they are
    pairs.write_pairs([(name, "other.jpg")], tmp_path / "pairs.txt")
    assert pairs.parse_pairs(tmp_path / "pairs.txt", [name, "other.jpg"]) == [(name, "other.jpg")]
