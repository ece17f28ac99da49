"""The medallion jobs on Spark (Sail or JVM Spark): bronze, silver + quarantine, gold, churn features."""
