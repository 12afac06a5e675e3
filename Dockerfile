FROM python:3.11-slim
WORKDIR /opt/stockpulse
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
CMD ["supervisord", "-c", "supervisord.conf"]
