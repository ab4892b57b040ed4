import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidReplicationFactorException;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Small admin helper for deploy/local/kafka.sh: one JVM start instead of one per
 * TopicCommand call (each of those costs ~2 s of JVM + Scala start-up).
 *
 * <pre>
 * LumenKafkaAdmin wait          BOOTSTRAP TIMEOUT_S
 * LumenKafkaAdmin ensure-topics BOOTSTRAP TIMEOUT_S NAME:PARTITIONS[:key=value,...] ...
 * LumenKafkaAdmin selftest      BOOTSTRAP TIMEOUT_S
 * </pre>
 *
 * Every command first waits (up to TIMEOUT_S) until the broker answers metadata and
 * has registered itself, so it doubles as the readiness probe. Exit 0 on success,
 * 1 on failure, 2 on bad usage. Progress goes to stdout, one line per step.
 */
public final class LumenKafkaAdmin {
    private static final short REPLICATION = 1;

    private final String bootstrap;
    private final long deadlineNanos;

    private LumenKafkaAdmin(String bootstrap, long timeoutSeconds) {
        this.bootstrap = bootstrap;
        this.deadlineNanos = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSeconds);
    }

    public static void main(String[] args) {
        if (args.length < 3) {
            usage();
        }
        long timeout;
        try {
            timeout = Long.parseLong(args[2]);
        } catch (NumberFormatException e) {
            usage();
            return;
        }
        LumenKafkaAdmin tool = new LumenKafkaAdmin(args[1], timeout);
        List<String> rest = List.of(args).subList(3, args.length);
        try {
            switch (args[0]) {
                case "wait" -> tool.withAdmin(admin -> tool.awaitBroker(admin));
                case "ensure-topics" -> tool.withAdmin(admin -> {
                    tool.awaitBroker(admin);
                    tool.ensureTopics(admin, parseSpecs(rest));
                });
                case "selftest" -> tool.withAdmin(admin -> {
                    tool.awaitBroker(admin);
                    tool.selftest(admin);
                });
                default -> usage();
            }
        } catch (IllegalArgumentException e) {
            System.err.println("error: " + e.getMessage());
            System.exit(2);
        } catch (Exception e) {
            System.err.println("error: " + describe(e));
            System.exit(1);
        }
        System.exit(0);
    }

    private static void usage() {
        System.err.println("usage: LumenKafkaAdmin wait|ensure-topics|selftest BOOTSTRAP TIMEOUT_S [NAME:PARTITIONS[:k=v,...] ...]");
        System.exit(2);
    }

    // ---------------------------------------------------------------- plumbing

    private interface AdminAction {
        void run(Admin admin) throws Exception;
    }

    private void withAdmin(AdminAction action) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "lumen-local-admin");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "100");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        props.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, "100");
        try (Admin admin = Admin.create(props)) {
            action.run(admin);
        }
    }

    private long remainingMillis() {
        return Math.max(0, TimeUnit.NANOSECONDS.toMillis(deadlineNanos - System.nanoTime()));
    }

    private boolean expired() {
        return System.nanoTime() - deadlineNanos >= 0;
    }

    private static void say(String message) {
        System.out.println(message);
        System.out.flush();
    }

    private static Throwable cause(Throwable e) {
        while ((e instanceof ExecutionException || e.getClass() == RuntimeException.class) && e.getCause() != null) {
            e = e.getCause();
        }
        return e;
    }

    private static String describe(Throwable e) {
        Throwable c = cause(e);
        return c.getClass().getSimpleName() + ": " + c.getMessage();
    }

    private static boolean retriable(Throwable e) {
        Throwable c = cause(e);
        // A broker that answers metadata may not have registered with the controller
        // yet: topic creation then fails with "only 0 broker(s) are registered".
        return c instanceof RetriableException
                || c instanceof InvalidReplicationFactorException
                || c instanceof java.util.concurrent.TimeoutException;
    }

    private static void pause() throws InterruptedException {
        Thread.sleep(200);
    }

    // ---------------------------------------------------------------- commands

    /** Waits until the broker answers metadata and lists at least one broker. */
    private void awaitBroker(Admin admin) throws Exception {
        long started = System.nanoTime();
        Throwable last = null;
        while (!expired()) {
            try {
                Collection<Node> nodes = admin.describeCluster().nodes()
                        .get(Math.min(3000, Math.max(1, remainingMillis())), TimeUnit.MILLISECONDS);
                if (!nodes.isEmpty()) {
                    say(String.format("broker answered metadata after %.1fs (%d broker(s))",
                            (System.nanoTime() - started) / 1e9, nodes.size()));
                    return;
                }
            } catch (ExecutionException | java.util.concurrent.TimeoutException e) {
                last = e;
            }
            pause();
        }
        throw new IllegalStateException("broker at " + bootstrap + " did not answer metadata in time"
                + (last == null ? "" : " (last error: " + describe(last) + ")"));
    }

    private record TopicSpec(String name, int partitions, Map<String, String> configs) {}

    private static List<TopicSpec> parseSpecs(List<String> args) {
        if (args.isEmpty()) {
            throw new IllegalArgumentException("ensure-topics needs at least one NAME:PARTITIONS");
        }
        List<TopicSpec> specs = new ArrayList<>();
        for (String arg : args) {
            String[] parts = arg.split(":", 3);
            if (parts.length < 2 || parts[0].isEmpty()) {
                throw new IllegalArgumentException("bad topic spec '" + arg + "' (want NAME:PARTITIONS[:k=v,...])");
            }
            int partitions;
            try {
                partitions = Integer.parseInt(parts[1]);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("bad partition count in '" + arg + "'");
            }
            if (partitions < 1) {
                throw new IllegalArgumentException("partition count must be >= 1 in '" + arg + "'");
            }
            Map<String, String> configs = new LinkedHashMap<>();
            if (parts.length == 3 && !parts[2].isEmpty()) {
                for (String kv : parts[2].split(",")) {
                    int eq = kv.indexOf('=');
                    if (eq <= 0) {
                        throw new IllegalArgumentException("bad config '" + kv + "' in '" + arg + "'");
                    }
                    configs.put(kv.substring(0, eq), kv.substring(eq + 1));
                }
            }
            specs.add(new TopicSpec(parts[0], partitions, configs));
        }
        return specs;
    }

    /**
     * Creates the missing topics (like TopicCommand --if-not-exists); for existing
     * ones, sets differing configs and warns about a different partition count
     * (partitions are never changed: that would re-map keys to partitions).
     */
    private void ensureTopics(Admin admin, List<TopicSpec> specs) throws Exception {
        while (true) {
            try {
                ensureTopicsOnce(admin, specs);
                return;
            } catch (Exception e) {
                if (!retriable(e) || expired()) {
                    throw e;
                }
                pause();
            }
        }
    }

    private void ensureTopicsOnce(Admin admin, List<TopicSpec> specs) throws Exception {
        Set<String> existing = admin.listTopics().names().get();
        List<NewTopic> toCreate = new ArrayList<>();
        List<TopicSpec> present = new ArrayList<>();
        for (TopicSpec spec : specs) {
            if (existing.contains(spec.name())) {
                present.add(spec);
            } else {
                toCreate.add(new NewTopic(spec.name(), spec.partitions(), REPLICATION).configs(spec.configs()));
            }
        }
        if (!toCreate.isEmpty()) {
            CreateTopicsResult result = admin.createTopics(toCreate);
            for (NewTopic topic : toCreate) {
                try {
                    result.values().get(topic.name()).get();
                    say("created topic " + topic.name() + " (" + topic.numPartitions() + " partitions"
                            + (topic.configs().isEmpty() ? "" : ", " + topic.configs()) + ")");
                } catch (ExecutionException e) {
                    if (!(cause(e) instanceof TopicExistsException)) {
                        throw e;
                    }
                    present.add(specs.stream().filter(s -> s.name().equals(topic.name())).findFirst().orElseThrow());
                }
            }
        }
        if (present.isEmpty()) {
            return;
        }
        List<String> names = present.stream().map(TopicSpec::name).toList();
        Map<String, TopicDescription> descriptions = admin.describeTopics(names).allTopicNames().get();
        List<ConfigResource> resources = names.stream()
                .map(n -> new ConfigResource(ConfigResource.Type.TOPIC, n)).toList();
        Map<ConfigResource, Config> configs = admin.describeConfigs(resources).all().get();
        Map<ConfigResource, Collection<AlterConfigOp>> alterations = new HashMap<>();
        for (TopicSpec spec : present) {
            int actual = descriptions.get(spec.name()).partitions().size();
            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, spec.name());
            Config config = configs.get(resource);
            List<AlterConfigOp> ops = new ArrayList<>();
            for (Map.Entry<String, String> want : spec.configs().entrySet()) {
                ConfigEntry entry = config.get(want.getKey());
                if (entry == null || !want.getValue().equals(entry.value())) {
                    ops.add(new AlterConfigOp(new ConfigEntry(want.getKey(), want.getValue()), AlterConfigOp.OpType.SET));
                }
            }
            if (!ops.isEmpty()) {
                alterations.put(resource, ops);
            }
            String note = actual == spec.partitions() ? ""
                    : " - WARNING: wanted " + spec.partitions() + "; left as is (adding partitions re-maps keys; delete the topic or the state dir to change it)";
            say("topic " + spec.name() + " exists (" + actual + " partitions)" + note);
        }
        if (!alterations.isEmpty()) {
            admin.incrementalAlterConfigs(alterations).all().get();
            alterations.forEach((resource, ops) -> ops.forEach(op -> say("set " + op.configEntry().name() + "="
                    + op.configEntry().value() + " on topic " + resource.name())));
        }
    }

    /**
     * End-to-end check of what the pipeline relies on: a transactional producer
     * (commit and abort), a read_committed consumer that sees only the committed
     * record, and a committed consumer-group offset. Uses a throw-away topic.
     */
    private void selftest(Admin admin) throws Exception {
        String nonce = UUID.randomUUID().toString().substring(0, 8);
        String topic = "lumen.selftest." + nonce;
        String group = "lumen-selftest-" + nonce;
        long started = System.nanoTime();
        ensureTopics(admin, List.of(new TopicSpec(topic, 1, Map.of())));
        try {
            Properties p = new Properties();
            p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "lumen-selftest-" + nonce);
            p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
            p.put(ProducerConfig.ACKS_CONFIG, "all");
            p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, String.valueOf(Math.max(5000, remainingMillis())));
            p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                producer.initTransactions();
                producer.beginTransaction();
                producer.send(new ProducerRecord<>(topic, "k", "committed-" + nonce));
                producer.commitTransaction();
                producer.beginTransaction();
                producer.send(new ProducerRecord<>(topic, "k", "aborted-" + nonce));
                producer.abortTransaction();
                producer.beginTransaction();
                producer.send(new ProducerRecord<>(topic, "k", "last-" + nonce));
                producer.commitTransaction();
            }
            say("transactional producer: committed 2 records, aborted 1");

            Properties c = new Properties();
            c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
            c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            List<String> seen = new ArrayList<>();
            TopicPartition tp = new TopicPartition(topic, 0);
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
                consumer.assign(List.of(tp));
                consumer.seekToBeginning(List.of(tp));
                while (!seen.contains("last-" + nonce) && !expired()) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                        seen.add(r.value());
                    }
                }
                consumer.commitSync(Map.of(tp, new OffsetAndMetadata(consumer.position(tp))));
            }
            List<String> want = List.of("committed-" + nonce, "last-" + nonce);
            if (!seen.equals(want)) {
                throw new IllegalStateException("read_committed consumer saw " + seen + ", expected " + want);
            }
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get();
            if (committed.get(tp) == null || committed.get(tp).offset() <= 0) {
                throw new IllegalStateException("consumer group offset not committed: " + committed);
            }
            say("read_committed consumer saw only the committed records; group offset " + committed.get(tp).offset() + " committed");
            admin.deleteConsumerGroups(List.of(group)).all().get();
        } finally {
            admin.deleteTopics(List.of(topic)).all().get();
        }
        say(String.format("selftest passed in %.1fs", (System.nanoTime() - started) / 1e9));
    }
}
