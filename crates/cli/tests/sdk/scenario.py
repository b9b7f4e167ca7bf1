"""Drives trustgate through the official OpenFGA Python SDK, unchanged.

Usage: python3 scenario.py BASE_URL ADMIN_TOKEN
The admin token only provisions: it creates the store and its model, a service account with the
store's writer role and two keys limited to that store (a writer and a reader). Everything an
application does (writes, checks, lists, reads) runs with the store-scoped keys, as it would in
production. Exits non-zero (with the failing assertion) if any answer differs from OpenFGA's
behaviour or a key reaches beyond its scope.
"""

import json
import sys
import urllib.request

from openfga_sdk import ClientConfiguration
from openfga_sdk.client.models import (
    ClientBatchCheckItem,
    ClientBatchCheckRequest,
    ClientCheckRequest,
    ClientExpandRequest,
    ClientListObjectsRequest,
    ClientReadChangesRequest,
    ClientTuple,
    ClientWriteRequest,
)
from openfga_sdk.client.models.list_users_request import ClientListUsersRequest
from openfga_sdk.credentials import CredentialConfiguration, Credentials
from openfga_sdk.exceptions import (
    FgaValidationException,
    ForbiddenException,
    UnauthorizedException,
    ValidationException,
)
from openfga_sdk.models.create_store_request import CreateStoreRequest
from openfga_sdk.models.fga_object import FgaObject
from openfga_sdk.models.read_request_tuple_key import ReadRequestTupleKey
from openfga_sdk.models.relationship_condition import RelationshipCondition
from openfga_sdk.models.user_type_filter import UserTypeFilter
from openfga_sdk.sync import OpenFgaClient

BASE, TOKEN = sys.argv[1], sys.argv[2]

MODEL = {
    "schema_version": "1.1",
    "type_definitions": [
        {"type": "user"},
        {
            "type": "group",
            "relations": {"member": {"this": {}}},
            "metadata": {"relations": {"member": {"directly_related_user_types": [{"type": "user"}]}}},
        },
        {
            "type": "document",
            "relations": {
                "owner": {"this": {}},
                "viewer": {
                    "union": {
                        "child": [
                            {"this": {}},
                            {"computedUserset": {"relation": "owner"}},
                        ]
                    }
                },
            },
            "metadata": {
                "relations": {
                    "owner": {"directly_related_user_types": [{"type": "user"}]},
                    "viewer": {
                        "directly_related_user_types": [
                            {"type": "user"},
                            {"type": "user", "wildcard": {}},
                            {"type": "group", "relation": "member"},
                            {"type": "user", "condition": "in_office_hours"},
                        ]
                    },
                }
            },
        },
    ],
    "conditions": {
        "in_office_hours": {
            "name": "in_office_hours",
            "expression": "hour >= 9 && hour < 17",
            "parameters": {"hour": {"type_name": "TYPE_NAME_INT"}},
        }
    },
}


def client(token=TOKEN, store_id=None):
    config = ClientConfiguration(
        api_url=BASE,
        store_id=store_id,
        credentials=Credentials(method="api_token", configuration=CredentialConfiguration(api_token=token)),
    )
    return OpenFgaClient(config)


def admin(method, path, body=None):
    """A call of trustgate's admin API with the admin token."""
    request = urllib.request.Request(
        BASE + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def allowed(fga, user, relation, obj, **kw):
    return fga.check(ClientCheckRequest(user=user, relation=relation, object=obj, **kw)).allowed


checks = 0
with client() as provisioner:
    store = provisioner.create_store(CreateStoreRequest(name="sdk-scenario"))
    assert len(store.id) == 26, store.id
    other = provisioner.create_store(CreateStoreRequest(name="another-tenant"))
    provisioner.set_store_id(store.id)
    model_id = provisioner.write_authorization_model(MODEL).authorization_model_id

app = admin("POST", "/admin/v1/service-accounts", {"name": "sdk-app", "owner": "sdk scenario"})
admin("POST", "/admin/v1/roles", {"subject": "service:" + app["id"], "role": f"store:{store.id}:writer"})
WRITER = admin(
    "POST", f"/admin/v1/service-accounts/{app['id']}/api-keys", {"scopes": [f"store:{store.id}:writer"]}
)["key"]
READER = admin(
    "POST", f"/admin/v1/service-accounts/{app['id']}/api-keys", {"scopes": [f"store:{store.id}:reader"]}
)["key"]

with client(token=READER, store_id=store.id) as reader:
    # A reader reads but never writes, and sees no other store.
    assert [s.id for s in reader.list_stores().stores] == [store.id]
    try:
        reader.write(ClientWriteRequest(writes=[ClientTuple("user:anne", "owner", "document:plan")]))
        raise AssertionError("a reader must not write")
    except ForbiddenException:
        pass

with client(token=WRITER, store_id=other.id) as outsider:
    try:
        outsider.get_store()
        raise AssertionError("a store-scoped key must not reach another store")
    except ForbiddenException:
        pass

with client(token=WRITER) as fga:
    fga.set_store_id(store.id)
    assert fga.get_store().name == "sdk-scenario"
    assert [s.id for s in fga.list_stores().stores] == [store.id]
    try:
        fga.write_authorization_model(MODEL)
        raise AssertionError("a writer must not write models")
    except ForbiddenException:
        pass
    fga.set_authorization_model_id(model_id)
    latest = fga.read_latest_authorization_model().authorization_model
    assert latest.id == model_id, latest.id

    fga.write(
        ClientWriteRequest(
            writes=[
                ClientTuple("user:anne", "owner", "document:plan"),
                ClientTuple("group:eng#member", "viewer", "document:plan"),
                ClientTuple("user:bob", "member", "group:eng"),
                ClientTuple("user:*", "viewer", "document:public"),
                ClientTuple(
                    "user:carol",
                    "viewer",
                    "document:hours",
                    condition=RelationshipCondition(name="in_office_hours", context={}),
                ),
            ]
        )
    )

    assert allowed(fga, "user:anne", "viewer", "document:plan"), "owner implies viewer"
    assert allowed(fga, "user:bob", "viewer", "document:plan"), "through group membership"
    assert not allowed(fga, "user:mallory", "viewer", "document:plan"), "stranger is denied"
    assert allowed(fga, "user:mallory", "viewer", "document:public"), "wildcard"
    assert allowed(fga, "user:carol", "viewer", "document:hours", context={"hour": 10})
    assert not allowed(fga, "user:carol", "viewer", "document:hours", context={"hour": 20})
    assert allowed(
        fga,
        "user:dave",
        "viewer",
        "document:plan",
        contextual_tuples=[ClientTuple("user:dave", "member", "group:eng")],
    ), "contextual tuple"
    assert not allowed(fga, "user:dave", "viewer", "document:plan"), "contextual tuples are not stored"
    checks += 8

    # A missing condition parameter is an error, never an allow.
    try:
        fga.check(ClientCheckRequest(user="user:carol", relation="viewer", object="document:hours"))
        raise AssertionError("missing condition parameter must fail")
    except (ValidationException, FgaValidationException):
        pass

    batch = fga.batch_check(
        ClientBatchCheckRequest(
            checks=[
                ClientBatchCheckItem(user="user:anne", relation="viewer", object="document:plan", correlation_id="a"),
                ClientBatchCheckItem(user="user:eve", relation="viewer", object="document:plan", correlation_id="e"),
            ]
        )
    )
    results = {r.correlation_id: r.allowed for r in batch.result}
    assert results == {"a": True, "e": False}, results

    objects = fga.list_objects(ClientListObjectsRequest(user="user:bob", relation="viewer", type="document")).objects
    assert sorted(objects) == ["document:plan", "document:public"], objects

    users = fga.list_users(
        ClientListUsersRequest(
            object=FgaObject(type="document", id="plan"),
            relation="viewer",
            user_filters=[UserTypeFilter(type="user")],
        )
    ).users
    ids = sorted(u.object.id for u in users if u.object is not None)
    assert ids == ["anne", "bob"], ids

    tree = fga.expand(ClientExpandRequest(relation="viewer", object="document:plan")).tree
    assert tree.root.name == "document:plan#viewer", tree.root.name

    read = fga.read(ReadRequestTupleKey(object="document:plan"))
    assert len(read.tuples) == 2, read.tuples
    changes = fga.read_changes(ClientReadChangesRequest(type="document"))
    assert len(changes.changes) == 4, changes.changes

    # A tuple that violates the model is refused and nothing is written.
    try:
        fga.write(ClientWriteRequest(writes=[ClientTuple("user:anne", "no_such_relation", "document:plan")]))
        raise AssertionError("invalid tuple must be refused")
    except (ValidationException, FgaValidationException):
        pass
    assert len(fga.read(ReadRequestTupleKey(object="document:plan")).tuples) == 2

    fga.write(ClientWriteRequest(deletes=[ClientTuple("user:bob", "member", "group:eng")]))
    assert not allowed(fga, "user:bob", "viewer", "document:plan"), "revocation is immediate"
    checks += 1

    try:
        fga.delete_store()
        raise AssertionError("a writer must not delete the store")
    except ForbiddenException:
        pass

with client() as provisioner:
    for store_id in (store.id, other.id):
        provisioner.set_store_id(store_id)
        provisioner.delete_store()

with client(token="tg_admin_wrong_token") as intruder:
    try:
        intruder.list_stores()
        raise AssertionError("a wrong token must be rejected")
    except UnauthorizedException:
        pass

print(f"OK: sdk scenario passed ({checks} checks)")
