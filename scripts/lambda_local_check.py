"""The journey of `scripts/lambda-local --check`, against functions already served by
`cargo lambda watch`, moto and the simulator (the shell script starts them):

1. every function answers (the first invocation of each compiles it);
2. a card is bound through the functions' URLs: the signed start link, the 302 to the
   simulator's hosted page, a success test card submitted there, the simulator's webhook to
   the webhook function, the status route polled until the binding is bound;
3. the charger plans now, then is fed the charge queue's messages as SQS batches until the
   queue is empty;
4. period 0 of the subscription is paid in the table, and the simulator's ledger holds exactly
   one transaction for its order, charged.

Exits 0 when the journey passed, 1 when a step failed (with what was seen).
"""

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import boto3

SUCCESS_CARD = "4242424242424242"  # tools/oen-sim/src/cards.rs: SUCCESS
CUSTOMER = "cust-1001"  # the customer of the start link local_aws prints
PLAN = "premium"


class JourneyFailed(Exception):
    pass


def step(message):
    print(f"lambda-local --check: {message}", flush=True)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def http(method, url, data=None, timeout=30):
    """(status, headers, body) of one request; redirects are returned, not followed."""
    body = None
    headers = {}
    if data is not None:
        body = urllib.parse.urlencode(data).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with OPENER.open(request, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")


def read_env_file(path):
    env = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                env[key] = value.strip("'")
    return env


class Journey:
    def __init__(self, args):
        self.args = args
        self.functions = f"http://127.0.0.1:{args.invoke_port}/lambda-url"
        self.sim = args.sim_url.rstrip("/")
        self.env = read_env_file(args.env_file)
        aws = dict(
            endpoint_url=args.moto_url,
            region_name=self.env["AWS_REGION"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.sqs = boto3.client("sqs", **aws)
        self.dynamodb = boto3.client("dynamodb", **aws)
        self.queue_url = self.env["CHARGE_QUEUE_URL"]
        self.table = self.env["TABLE_NAME"]

    # 1. -------------------------------------------------------------------------------------
    def wait_for_functions(self):
        """Invokes each function once with a request it refuses, so that it is compiled and
        running before the journey needs it (the simulator's webhook gives up after 3 attempts
        within seconds, far less than a first build)."""
        deadline = time.monotonic() + self.args.build_timeout
        warm_ups = [
            ("checkout-start", "GET", f"{self.functions}/checkout-start/checkout/status", None),
            ("webhook", "POST", f"{self.functions}/webhook/oen/webhook/not-the-key", {}),
        ]
        for name, method, url, data in warm_ups:
            step(f"waiting for {name} (its first invocation compiles it; "
                 f"up to {self.args.build_timeout} s in all)")
            started = time.monotonic()
            status = self.answer_before(deadline, name, lambda: http(method, url, data, 60)[0])
            step(f"{name} answers ({status}) after {time.monotonic() - started:.0f} s")
        step("waiting for charger")
        started = time.monotonic()
        # A payload the charger refuses: it answers without planning anything.
        self.answer_before(deadline, "charger", lambda: self.invoke_charger(
            {"warm-up": True}, expect_ok=False, timeout=max(1, deadline - time.monotonic())))
        step(f"charger answers after {time.monotonic() - started:.0f} s")

    def answer_before(self, deadline, name, attempt):
        last = None
        while time.monotonic() < deadline:
            try:
                return attempt()
            except (OSError, urllib.error.URLError, JourneyFailed,
                    subprocess.TimeoutExpired) as e:
                last = e
                time.sleep(2)
        raise JourneyFailed(
            f"{name} did not answer within {self.args.build_timeout} s "
            f"(cargo lambda watch compiles it on first invocation; see the watch log; "
            f"raise LAMBDA_LOCAL_BUILD_TIMEOUT on a slow machine); last error: {last}")

    # 2. -------------------------------------------------------------------------------------
    def bind_card(self):
        step("opening the signed start link through checkout-start")
        status, headers, body = http("GET", self.args.start_link)
        if status != 302:
            raise JourneyFailed(f"start link answered {status}, not 302: {body[:500]}")
        hosted = headers["Location"]
        if not hosted.startswith(self.sim):
            raise JourneyFailed(f"start link redirects to {hosted}, not the simulator")
        step(f"302 to the simulator's hosted page {hosted}")
        status, _, body = http("GET", hosted)
        if status != 200 or "cardNumber" not in body:
            raise JourneyFailed(f"hosted page answered {status}: {body[:500]}")
        step(f"submitting the success test card {SUCCESS_CARD}")
        status, headers, body = http(
            "POST", hosted, {"email": "mei@example.com", "cardNumber": SUCCESS_CARD})
        if status != 303:
            raise JourneyFailed(f"card form answered {status}, not 303: {body[:500]}")
        back = urllib.parse.urlsplit(headers["Location"])
        reference = urllib.parse.parse_qs(back.query).get("ref", [None])[0]
        if not reference:
            raise JourneyFailed(f"the browser is sent to {headers['Location']}, without ref")
        step(f"browser back on the status route with ref={reference}; "
             "polling until the webhook has bound the card")
        status_url = f"{self.functions}/checkout-start/checkout/status?ref={reference}"
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline:
            code, _, body = http("GET", status_url)
            if code == 200:
                state = json.loads(body)
                if state.get("state") == "bound":
                    step(f"bound: {body.strip()}")
                    return
                if state.get("state") != "pending":
                    break
            time.sleep(0.5)
        deliveries = http("GET", f"{self.sim}/_sim/webhooks")[2]
        raise JourneyFailed(
            f"binding not bound; last status {state}; simulator's deliveries: {deliveries[:1000]}")

    # 3. -------------------------------------------------------------------------------------
    def invoke_charger(self, payload, expect_ok=True, timeout=300):
        """Invokes the charger through `cargo lambda invoke`; returns its answer."""
        result = subprocess.run(
            [self.args.cargo_lambda, "lambda", "invoke", "charger",
             "--invoke-address", "127.0.0.1", "--invoke-port", str(self.args.invoke_port),
             "--output-format", "json", "--data-ascii", json.dumps(payload)],
            capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            if expect_ok:
                raise JourneyFailed(
                    f"cargo lambda invoke charger failed: {result.stderr.strip()[-2000:]}")
            # The refusal of the warm-up payload is the charger's own answer; anything else
            # (not listening yet, still building) is not.
            if "Unrecognised" not in result.stderr:
                raise JourneyFailed(f"charger not answering: {result.stderr.strip()[-500:]}")
            return None
        return json.loads(result.stdout) if result.stdout.strip() else None

    def charge(self):
        step("charger: schedule run (events/charger-now.json, plan what is due now)")
        with open(self.args.schedule_event) as f:
            answer = self.invoke_charger(json.load(f))
        step(f"charger answered {json.dumps(answer)}")
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for round_number in range(1, 51):
            received = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                AttributeNames=["All"]).get("Messages", [])
            if not received:
                if self.queue_is_empty():
                    step("charge queue empty")
                    return
                continue
            kinds = [json.loads(m["Body"]).get("kind", "?") for m in received]
            step(f"batch {round_number}: {len(received)} message(s) ({', '.join(kinds)}) "
                 "to the charger")
            answer = self.invoke_charger(sqs_event(received, queue_arn, self.env["AWS_REGION"]))
            failures = (answer or {}).get("batchItemFailures") or []
            if failures:
                raise JourneyFailed(f"the charger reported batch item failures: {failures}")
            # What the event source mapping does after a batch without failures.
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                         for i, m in enumerate(received)])
        raise JourneyFailed("the charge queue was not empty after 50 batches")

    def queue_is_empty(self):
        counts = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible",
                            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return all(int(n) == 0 for n in counts.values())

    # 4. -------------------------------------------------------------------------------------
    def assert_paid(self):
        items = self.scan()
        subscription = next(
            (i for i in items
             if s(i, "pk") == f"CUST#{CUSTOMER}" and s(i, "sk") == f"SUB#{PLAN}"), None)
        if subscription is None:
            raise JourneyFailed(f"no subscription of {CUSTOMER} to {PLAN} in the table")
        subscription_id = s(subscription, "id")
        period = next(
            (i for i in items
             if s(i, "pk") == f"SUB#{subscription_id}" and s(i, "sk") == "PERIOD#000000"), None)
        if period is None:
            raise JourneyFailed(f"subscription {subscription_id} has no period 0 in the table")
        period_state = period.get("state", {}).get("M", {})
        state = s(period_state, "state")
        order_id = s(period, "order_id")
        if state != "paid":
            raise JourneyFailed(
                f"period 0 of {subscription_id} (order {order_id}) is {state}, not paid: "
                f"{period}")
        transaction = s(period_state, "transaction")
        step(f"table: period 0 of subscription {subscription_id} is paid "
             f"(order {order_id}, transaction {transaction})")
        ledger = json.loads(http("GET", f"{self.sim}/_sim/ledger")[2])["transactions"]
        of_order = [t for t in ledger if t["orderId"] == order_id]
        if [t["status"] for t in of_order] != ["charged"]:
            raise JourneyFailed(
                f"the simulator's ledger holds {len(of_order)} transaction(s) for order "
                f"{order_id}, not exactly one charged: {of_order}")
        if of_order[0]["id"] != transaction:
            raise JourneyFailed(
                f"the ledger's transaction {of_order[0]['id']} is not the period's {transaction}")
        step(f"simulator ledger: exactly one transaction for order {order_id}, "
             f"{of_order[0]['id']} charged NT${of_order[0]['amount']}")

    def scan(self):
        items, start = [], None
        while True:
            page = self.dynamodb.scan(
                TableName=self.table, **({"ExclusiveStartKey": start} if start else {}))
            items.extend(page["Items"])
            start = page.get("LastEvaluatedKey")
            if not start:
                return items


def s(item, name):
    """A string attribute of a DynamoDB item (as the low-level API returns it), or None."""
    return item.get(name, {}).get("S")


def sqs_event(messages, queue_arn, region):
    """The SQS batch event Lambda's event source mapping would send for these messages."""
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": m["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    } for m in messages]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoke-port", type=int, required=True)
    parser.add_argument("--sim-url", required=True)
    parser.add_argument("--moto-url", required=True)
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--start-link", required=True)
    parser.add_argument("--schedule-event", default="events/charger-now.json")
    parser.add_argument("--cargo-lambda", default="cargo-lambda")
    parser.add_argument("--build-timeout", type=int, default=900)
    args = parser.parse_args()
    started = time.monotonic()
    journey = Journey(args)
    try:
        journey.wait_for_functions()
        journey.bind_card()
        journey.charge()
        journey.assert_paid()
    except (JourneyFailed, OSError, subprocess.TimeoutExpired) as e:
        step(f"FAILED: {e}")
        return 1
    step(f"passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
