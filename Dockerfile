# Model service image: `mlnb serve` on the model version exported into service/model
# (deploy.yaml runs `.venv/bin/mlnb export churn@production service/model` first).
#
# The service binds 0.0.0.0 inside the container, so it refuses to start without API keys. Inject the key
# ring at run time, never at build time (keys may be given as sha256:<hex> so the clear key is not even there):
#   docker run -p 8000:8000 -e MLNB_API_KEYS="$(cat keys.yaml)" IMAGE
#   keys.yaml:  app: {key: sha256:..., roles: [predict]}
#               ops: {key: sha256:..., roles: [predict, admin]}
# TLS: mount a certificate and key and append --ssl-certfile/--ssl-keyfile; more processes: --workers N.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# LightGBM's wheels load libgomp.so.1 (OpenMP), which the slim image does not have.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# The runtime requirements first (from settings.ini, as setup.py reads them), so that
# this layer stays cached while only the library code changes. No dev extras.
COPY settings.ini ./
RUN python -c "import configparser, shlex; c = configparser.ConfigParser(delimiters=['=']); c.read('settings.ini'); open('/tmp/requirements.txt', 'w').write('\n'.join(shlex.split(c['DEFAULT']['requirements'])) + '\n')" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY setup.py README.md ./
COPY mlnb/ mlnb/
RUN pip install --no-deps . \
    && pip check \
    && rm -rf /src/build /src/*.egg-info

COPY service/model /model

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mlnb
USER mlnb
WORKDIR /home/mlnb

EXPOSE 8000

# python:3.11-slim has no curl; urlopen raises (exit 1) unless /ready answers 2xx (model loaded, checked, warmed).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]

# SIGTERM (docker stop) drains in-flight requests and flushes the prediction log (/home/mlnb/predictions:
# mount a volume there to keep it).
STOPSIGNAL SIGTERM
CMD ["mlnb", "serve", "/model", "--host", "0.0.0.0", "--port", "8000", "--log-dir", "/home/mlnb/predictions"]
