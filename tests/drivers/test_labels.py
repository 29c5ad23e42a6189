"""Every field's schema title is its UI label, word for word, as the vendor documents it.

`LABELS` is the vendor's per-driver documentation (one Integration and one
UserInterface page per driver) copied as data: the key chanops uses, and the exact
label the platform's UI shows. `UNLABELLED` are the fields whose label the vendor's
pages do not give (their titles are chanops's own wording); every other field must be
in `LABELS`, so a field added to a schema without its documented label fails here.
"""

from __future__ import annotations

import pytest

from chanops.emulator import rules as platform_rules
from chanops.engine.export import export_manifest
from chanops.manifests import schemas
from chanops.manifests.drivers import DRIVER_NAMES, driver_info, field_docs
from chanops.platform.models import Connection

DRIVER_TITLES = {
    "shopware6": "Shopware 6",
    "shopify": "Shopify",
    "sfcc": "Salesforce Commerce Cloud",
    "amazon": "Amazon",
    "magento2": "Magento 2",
    "tradebyte": "Tradebyte",
    "actindo-pos": "Actindo POS",
    "bigcommerce": "BigCommerce",
}


def _sfcc_instance(prefix: str, suffix: str) -> dict[str, str]:
    return {
        f"credentials.{prefix}.url": "URL" + suffix,
        f"credentials.{prefix}.clientId": "Client ID" + suffix,
        f"credentials.{prefix}.clientPassword": "Client password" + suffix,
        f"credentials.{prefix}.username": "Username" + suffix,
        f"credentials.{prefix}.userPassword": "User password" + suffix,
        f"credentials.{prefix}.accessToken": "Access token" + suffix,
    }


LABELS: dict[str, dict[str, str]] = {
    "shopware6": {
        "credentials.url": "URL",
        "credentials.accessKeyId": "Access key ID",
        "credentials.secretAccessKey": "Secret access key",
        "settings.defaultLanguage": "Select Shopware 6 default language",
        "settings.orders.importAboveNumber": "Import only orders with a higher number than this",
        "settings.orders.importStatuses": "Import only orders with status",
        "settings.orders.stateAfterImport": "Order state to set in shop after successful import",
        "settings.orders.stateAfterShipped": (
            "Order state to set in shop after the order is fully shipped"
        ),
        "settings.taxClasses": 'Select Core1 tax class for Shopware 6 "<class>"',
        "settings.priceRules": "Select price rules to create price attributes",
        "settings.klarna": "Enable Klarna integration for this connection",
        "settings.ratepay": "Enable Ratepay integration for this connection",
    },
    "shopify": {
        "credentials.shopUrl": "Shop URL",
        "credentials.apiKey": "API key",
        "settings.orderNameAsShopId": "Enable order name as ID in shop",
        "settings.orderImport.defaultTaxClass": "Select default tax class",
        "settings.offerImport.defaultTaxClass": "Select default tax class",
        "settings.offerImport.collectionsByTaxClass": (
            'Save the title of the collections for each tax class "<class>" here'
        ),
    },
    "sfcc": {
        "credentials.productionMode": "Production mode",
        **_sfcc_instance("staging", ""),
        **_sfcc_instance("production", " (Production)"),
        "settings.priceBooks[].currency": "Currency",
        "settings.uploadMode.mode": "Upload mode",
        "settings.uploadMode.delayMinutes": "Delay in minutes",
        "settings.uploadMode.cron": "Cron line",
        "settings.taxClasses[].code": "Commerce Cloud Code",
        "settings.taxClasses[].actindoId": "Actindo ID",
        "settings.ignoredProductAttributes": "SFCC attribute ID",
        "settings.defaultLanguage": "Language used for default value",
        "settings.skipVariationAttributes": "SFCC attribute ID",
        "settings.viewTypes": "View type",
        "settings.jobIdDataImport": "Job ID data import",
        "settings.jobIdInventoryImport": "Job ID inventory import",
        "settings.orderStatusFields.orderStatus": "Field for orders status",
        "settings.orderStatusFields.paymentStatus": "Payment status field",
        "settings.orderStatusFields.deliveryStatus": "Deliver status field",
        "settings.uploadStockOnly": "Upload stock only",
        "settings.parallelJobs": "Number of parallel jobs",
        "settings.handleInventoryCustomField": "Handle inventory custom field",
    },
    "amazon": {
        "credentials.sellerId": "Seller ID",
        "credentials.accessToken": "Access token",
        "credentials.marketplace": "Amazon marketplace",
        "settings.offers.updateFbaStock": "Update stock for 'Fulfillment by Amazon (FBA)' offers",
        "settings.orderImport.mfn": "Import 'Merchant Fulfilled Network' (MFN) orders.",
        "settings.orderImport.primeByMerchant": "Import 'Prime by Merchant' orders.",
        "settings.orderImport.mfnFrom": "Import MFN orders from",
        "settings.orderImport.fba": "Import 'Fulfillment by Amazon' (FBA) orders.",
        "settings.orderImport.markFbaShipped": (
            "Mark 'Fulfillment by Amazon' orders as shipped during import and disable warehousing."
        ),
        "settings.orderImport.vcsEnabled": "Is the VAT calculation service (VCS) enabled?",
        "settings.orderImport.fbaFrom": "Import FBA orders from",
        "settings.orderImport.packingStationAddressLayout": "Packing station address layout",
        "settings.orderExport.shipments.b2b": "B2B orders",
        "settings.orderExport.shipments.b2c": "B2C orders",
        "settings.orderExport.invoices.b2b": "B2B orders",
        "settings.orderExport.invoices.b2c": "B2C orders",
        "settings.shippingProviderMapping": "UCS shipping provider",
    },
    "magento2": {
        "credentials.url": "URL",
        "credentials.username": "Username",
        "credentials.password": "Password",
        "credentials.accessToken": "Access token",
        "settings.storeViewLanguages": "Select Core1 language for store view",
        "settings.orderStates.importStates": "Filter orders to import",
        "settings.orderStates.importAboveNumber": (
            "Import only orders with a higher number than this"
        ),
        "settings.orderStates.statusFilter": "Status to filter for (leave empty if not required)",
        "settings.orderStates.stateAfterImport": (
            "Order state to be set in shop after successful import"
        ),
        "settings.orderStates.statusAfterImport": (
            "Order status to be set in shop after successful import"
        ),
        "settings.orderStates.statusAfterPartiallyShipped": (
            "Order status to be set in shop after partially shipped"
        ),
        "settings.orderStates.stateAfterFullyShipped": (
            "Order state to be set in shop after fully shipped"
        ),
        "settings.orderStates.statusAfterFullyShipped": (
            "Order status to be set in shop after fully shipped"
        ),
        "settings.orderStates.statusAfterPartiallyPaid": (
            "Order status to be set in shop after partially paid"
        ),
        "settings.orderStates.statusAfterFullyPaid": (
            "Order status to be set in shop after fully paid"
        ),
        "settings.orderStates.statusAfterTrackingNumber": (
            "Order status to be set in shop after tracking number set"
        ),
        "settings.orderStates.createInvoiceWhenPaid": (
            "Create an invoice in Magento for orders that are fully paid"
        ),
        "settings.orderStates.notifyCustomerAboutInvoice": "Notify customer about the invoice",
        "settings.taxClasses": "Select Magento 2 tax class for Core1 tax class",
        "settings.defaultLanguage": "Select Core1 language to be set as default",
        "settings.hiddenImageAttributes": (
            "Select the image attributes whose images must be hidden from the gallery"
        ),
        "settings.imageName.useEcmName": "Use ECM image name",
        "settings.imageName.regex": "Regular expression",
    },
    "tradebyte": {
        "credentials.merchantNumber": "Merchant number",
        "credentials.shopName": "Shop name",
        "credentials.restUsername": "Username (REST)",
        "credentials.restPassword": "Password (REST)",
        "credentials.sftpUsername": "Username (SFTP)",
        "credentials.sftpPassword": "Password (SFTP)",
        "credentials.testApi": "Test API?",
        "settings.salesChannels": "Active sales channels",
        "settings.languages": "Enable languages that exist in Tradebyte",
    },
    "actindo-pos": {},
    "bigcommerce": {
        "credentials.storeHash": "Store hash",
        "credentials.accessToken": "Access token",
        "settings.variantOptionType": "Variant option type used for variants",
        "settings.orderFilters.statuses": "Filter orders to import by",
        "settings.orderFilters.fromOrderId": "Import only orders with an ID as of",
        "settings.orderFilters.createdFrom": "Import only orders created as of",
        "settings.orderFilters.importArchived": "Import archived orders",
        "settings.offers.onlyPushMappedAttributes": "Only push mapped attributes",
    },
}

# Fields the vendor's pages name without a label: groups of fields (objects and lists
# of objects), and a few the UI shows as toggles or columns.
UNLABELLED: dict[str, set[str]] = {
    "shopware6": {"settings.orders", "settings.paymentMethods"},
    "shopify": {"settings.orderImport", "settings.offerImport"},
    "sfcc": {
        "credentials.staging",
        "credentials.production",
        "settings.priceBooks",
        "settings.priceBooks[].id",
        "settings.paymentMethods",
        "settings.paymentMethods[].id",
        "settings.paymentMethods[].name",
        "settings.uploadMode",
        "settings.taxClasses",
        "settings.orderStatusFields",
        "settings.orderSearchQuery",
    },
    "amazon": {
        "settings.offers",
        "settings.orderImport",
        "settings.orderExport",
        "settings.orderExport.shipments",
        "settings.orderExport.invoices",
    },
    "magento2": {"settings.orderStates", "settings.imageName"},
    "tradebyte": set(),
    "actindo-pos": set(),
    "bigcommerce": {"settings.orderFilters", "settings.offers"},
}


def _titles(driver: str) -> dict[str, str]:
    return {f"{f.section}.{f.key}": f.label for f in field_docs(driver)}


def test_the_tables_cover_every_driver() -> None:
    assert set(DRIVER_NAMES) == set(LABELS) == set(UNLABELLED) == set(DRIVER_TITLES)


@pytest.mark.parametrize("driver", sorted(LABELS))
def test_every_title_is_the_documented_ui_label(driver: str) -> None:
    titles = _titles(driver)
    wrong = {
        key: (titles.get(key), label)
        for key, label in LABELS[driver].items()
        if titles.get(key) != label
    }
    assert wrong == {}, "schema title != documented label"
    undocumented = set(titles) - set(LABELS[driver]) - UNLABELLED[driver]
    assert undocumented == set(), "fields with neither a documented label nor a listing"
    assert UNLABELLED[driver] <= set(titles)  # the listing names fields that exist
    assert driver_info(driver).title == DRIVER_TITLES[driver]


def test_labels_reach_driver_info_for_export_comments() -> None:
    # `export` comments every field with driver_info's labels (pointers relative to spec).
    labels = driver_info("magento2").labels
    assert labels["/settings/orderStates/statusAfterFullyPaid"] == (
        "Order status to be set in shop after fully paid"
    )
    assert driver_info("sfcc").labels["/credentials/production/accessToken"] == (
        "Access token (Production)"
    )


def test_export_comments_show_the_ui_labels() -> None:
    conn = Connection(
        id=7,
        name="BC",
        driver="bigcommerce",
        status="active",
        version=1,
        credentials={"storeHash": "abc", "accessToken": None},
        settings={"orderFilters": {"importArchived": True}},
    )
    text = export_manifest(conn, "bc")
    assert "    storeHash: abc  # Store hash\n" in text
    assert "# Access token (secret: provide it)" in text
    assert "      importArchived: true  # Import archived orders\n" in text


def _required(driver: str) -> set[str]:
    return {
        f"{f.section}.{f.key}" for f in field_docs(driver) if f.required and f.key != "production"
    }


def _platform_required(
    fields: tuple[platform_rules.CredField, ...], prefix: str = "credentials"
) -> set[str]:
    out: set[str] = set()
    for f in fields:
        path = f"{prefix}.{f.name}"
        if f.required or f.name == "production":
            if not f.children:
                out.add(path)
            out |= _platform_required(f.children, path)
    return out


@pytest.mark.parametrize("driver", sorted(LABELS))
def test_schema_and_platform_require_the_same_credentials(driver: str) -> None:
    """One truth about what a working connection needs: the schema's and the platform's."""
    ours = {k for k in _required(driver) if k.startswith("credentials.")}
    ours -= {"credentials.staging"}
    theirs = _platform_required(platform_rules.DRIVERS[driver].credentials)
    assert ours == theirs


def test_schema_and_platform_agree_on_what_waits_for_the_first_sync() -> None:
    for driver in DRIVER_NAMES:
        d = platform_rules.DRIVERS[driver]
        gated = (
            {"/settings"}
            if d.all_settings_after_sync
            else {"/settings/" + s.replace(".", "/") for s in d.model_settings}
        )
        assert driver_info(driver).after_sync_paths == gated, driver


def test_sync_after_change_fields_are_the_documented_ones() -> None:
    marked = {d: dict(driver_info(d).sync_after_change) for d in DRIVER_NAMES}
    assert {d: m for d, m in marked.items() if m} == {
        "amazon": {"/settings/shippingProviderMapping": "change"},
        "tradebyte": {"/settings/salesChannels": "change"},
        "shopware6": {
            "/settings/priceRules": "change",
            "/settings/klarna": "enable",
            "/settings/ratepay": "enable",
        },
    }


def test_schema_command_shows_the_labels() -> None:
    # `chanops schema --driver X` prints the driver's schema as shipped.
    sfcc = schemas.driver_schema("sfcc")["properties"]["settings"]["properties"]
    assert sfcc["uploadMode"]["properties"]["mode"]["title"] == "Upload mode"


def test_the_fields_every_driver_has_carry_their_ui_labels() -> None:
    """DRIVERS.md's rules for every driver: the name, the driver, the two automations."""
    spec = schemas.connection_schema()["properties"]["spec"]["properties"]
    automation = spec["automation"]["properties"]
    assert {
        "spec.displayName": spec["displayName"]["title"],
        "spec.driver": spec["driver"]["title"],
        "spec.automation.orderDownload": automation["orderDownload"]["title"],
        "spec.automation.returnDownload": automation["returnDownload"]["title"],
    } == {
        "spec.displayName": "Name",
        "spec.driver": "Driver",
        "spec.automation.orderDownload": "Download orders automatically",
        "spec.automation.returnDownload": "Download returns automatically",
    }
    documented = ["never", "2m", "5m", "10m", "15m", "20m", "30m", "60m"]
    for key in ("orderDownload", "returnDownload"):
        assert automation[key]["enum"] == documented
        assert automation[key].get("default") == "never"
    assert sorted(spec["driver"]["enum"]) == sorted(DRIVER_TITLES)
