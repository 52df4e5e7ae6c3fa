# Model service image: `mlnb serve` on the model version exported into service/model
# (deploy.yaml runs `.venv/bin/mlnb export churn@production service/model` first).
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

# python:3.11-slim has no curl; urlopen raises (exit 1) unless /health answers 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

CMD ["mlnb", "serve", "/model", "--host", "0.0.0.0", "--port", "8000"]
