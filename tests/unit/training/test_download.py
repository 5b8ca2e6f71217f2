import functools
import socket
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from training.data.download import DownloadError, fetch, main
from training.data.movielens import load_movielens


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/truncated/"):
            # Promises 1000 bytes and sends 10: a connection that drops mid-download.
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"PK" * 5)
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over a folder holding `ml-100k.zip` (a tiny fixture) and a bad zip."""
    site = tmp_path / "site"
    site.mkdir()
    with zipfile.ZipFile(site / "ml-100k.zip", "w") as zf:
        zf.writestr(
            "ml-100k/u.item",
            "1|Toy Story (1995)|01-Jan-1995||url|" + "|".join("0001" + "0" * 15) + "\n",
        )
        zf.writestr("ml-100k/u.data", "1\t1\t5\t100\n")
        zf.writestr("ml-100k/README", "a fixture written by the test\n")
    (site / "ml-1m.zip").write_bytes(b"this is not a zip")
    with zipfile.ZipFile(site / "ml-25m.zip", "w") as zf:
        zf.writestr("../escape.txt", "zip slip")
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_downloads_unzips_and_is_idempotent(server, tmp_path):
    dest = tmp_path / "raw"
    folder = fetch("ml-100k", dest, base_url=server, progress=False)
    assert folder == dest / "ml-100k"
    assert (folder / "u.data").read_text() == "1\t1\t5\t100\n"
    assert sorted(p.name for p in dest.iterdir()) == ["ml-100k"]  # no .part, no zip left
    items = load_movielens(folder).items
    assert items["1"].features == ("Animation",)
    # Present already: no network needed the second time.
    assert fetch("ml-100k", dest, base_url="http://127.0.0.1:9", progress=False) == folder


def test_keep_zip(server, tmp_path):
    fetch("ml-100k", tmp_path, base_url=server, progress=False, keep_zip=True)
    assert (tmp_path / "ml-100k.zip").is_file()
    assert not (tmp_path / "ml-100k.zip.part").exists()


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_network_failure_is_a_clear_error_and_leaves_nothing(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(DownloadError) as caught:
        fetch("ml-1m", tmp_path, base_url=url, progress=False, timeout=5)
    message = str(caught.value)
    assert f"could not download {url}/ml-1m.zip" in message
    assert "refused" in message.lower()
    assert "network connection" in message
    assert list(tmp_path.iterdir()) == []


def test_a_dropped_connection_leaves_no_partial_file(server, tmp_path):
    dest = tmp_path / "raw"
    with pytest.raises(DownloadError, match="could not download"):
        fetch("ml-1m", dest, base_url=f"{server}/truncated", progress=False, timeout=5)
    assert list(dest.iterdir()) == []


def test_http_error_and_bad_zips(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch("ml-32m", tmp_path, base_url=server, progress=False)
    with pytest.raises(DownloadError, match="not a valid zip"):
        fetch("ml-1m", tmp_path, base_url=server, progress=False)
    with pytest.raises(DownloadError, match="unsafe path"):
        fetch("ml-25m", tmp_path / "x", base_url=server, progress=False)
    assert not (tmp_path / "escape.txt").exists()


def test_yelp_prints_instructions(tmp_path, capsys):
    assert fetch("yelp", tmp_path) == tmp_path / "yelp"
    out = capsys.readouterr().out
    assert "https://business.yelp.com/data/resources/open-dataset/" in out
    assert "yelp_academic_dataset_review.json" in out
    assert str(tmp_path / "yelp") in out
    with pytest.raises(ValueError, match="unknown dataset"):
        fetch("ml-7b", tmp_path)


def test_cli(server, tmp_path, capsys):
    assert main(["ml-100k", "--dest", str(tmp_path), "--base-url", server, "--quiet"]) == 0
    assert (tmp_path / "ml-100k" / "u.item").is_file()
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["ml-1m", "--dest", str(tmp_path), "--base-url", url, "--quiet"]) == 1
    assert "error: could not download" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["not-a-dataset"])
