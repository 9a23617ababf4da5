"""factory_boy factories for the domain models."""

import hashlib

import factory

from apps.fleet.models import Artifact, Cohort, Component, Device, Release, hash_token


class ComponentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Component
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"comp{n}")
    kind = Component.Kind.APP


class ReleaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Release
        django_get_or_create = ("component", "version")

    component = factory.SubFactory(ComponentFactory)
    version = factory.Sequence(lambda n: f"1.{n}")


class ArtifactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Artifact

    release = factory.SubFactory(ReleaseFactory)
    filename = factory.Sequence(lambda n: f"image-{n}.bin")
    size = 1024
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.filename.encode()).hexdigest())


class DeviceFactory(factory.django.DjangoModelFactory):
    """A device with a known token: `DeviceFactory(token="t")`; default token is f"token-{uid}"."""

    class Meta:
        model = Device

    class Params:
        token = None

    uid = factory.Sequence(lambda n: f"dev-{n:05d}")
    hw_model = "rpi4"
    attributes = factory.LazyFunction(lambda: {"region": "eu-west"})
    token_hash = factory.LazyAttribute(lambda o: hash_token(o.token or f"token-{o.uid}"))


class CohortFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cohort

    name = factory.Sequence(lambda n: f"cohort-{n}")
    filter_text = 'hw == "rpi4"'
