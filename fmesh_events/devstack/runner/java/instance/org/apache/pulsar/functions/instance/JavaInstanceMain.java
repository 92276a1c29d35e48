package org.apache.pulsar.functions.instance;

import java.io.File;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The entry class of Function Mesh's Java command line, doing what Pulsar's own
 * JavaInstanceMain (pulsar-functions-runtime-all, which Maven Central does not serve) does.
 *
 * <p>The root class loader is the application class path: this jar, whose manifest
 * Class-Path names the jars Pulsar's java-instance.jar bundles (pulsar-io-core,
 * pulsar-functions-api, pulsar-client-api, avro, jackson, protobuf, gson, slf4j and log4j),
 * so user code and the instance share those interfaces. The instance class loader, a child
 * of the root, holds every jar of the {@code pulsar.functions.instance.classpath} property;
 * JavaInstanceStarter runs in it and loads the user code in a class loader of its own.
 *
 * <p>Before the instance starts, the root class loader's Log4j context is made, so that it is
 * the one context of the process: Log4j's default ClassLoaderContextSelector gives each class
 * loader its own context unless an ancestor's exists, and JavaInstanceRunnable adds the
 * log-topic appender to the root class loader's context (and the default one) while the
 * Context logger it hands to the function comes from the instance class loader. Without
 * this, nothing the function logs reaches its logTopic.
 *
 * <p>Uses nothing but the JDK (Log4j through reflection): it runs before any other jar is loaded.
 */
public final class JavaInstanceMain {

    static final String INSTANCE_CLASSPATH_PROPERTY = "pulsar.functions.instance.classpath";
    static final String STARTER_CLASS = "org.apache.pulsar.functions.runtime.JavaInstanceStarter";
    // Function Mesh passes it for connector-backed Functions; JavaInstanceStarter of Pulsar
    // 4.0 has no such option and would refuse the whole command line.
    static final String CONNECTORS_DIRECTORY_OPTION = "--connectors_directory";

    private JavaInstanceMain() {
    }

    public static void main(String[] args) throws Exception {
        ClassLoader root = Thread.currentThread().getContextClassLoader();
        String classpath = System.getProperty(INSTANCE_CLASSPATH_PROPERTY);
        if (classpath == null) {
            throw new IllegalArgumentException("Property " + INSTANCE_CLASSPATH_PROPERTY + " is not set!");
        }
        URL[] urls = instanceClasspath(classpath).stream().map(JavaInstanceMain::toUrl).toArray(URL[]::new);
        ClassLoader instanceLoader = new URLClassLoader(urls, root);
        shareRootLoggerContext(root);
        System.out.println("Using function root classloader: " + root);
        System.out.println("Using function instance classloader: " + instanceLoader + " (" + urls.length + " jars)");

        Class<?> starterClass = Class.forName(STARTER_CLASS, true, instanceLoader);
        Object starter = starterClass.getDeclaredConstructor().newInstance();
        Method start = starterClass.getDeclaredMethod("start", String[].class, ClassLoader.class, ClassLoader.class);
        System.out.println("Starting function instance...");
        start.invoke(starter, starterArguments(args), instanceLoader, root);
    }

    /**
     * Make Log4j's context of the root class loader before any other: the instance's and the
     * user code's class loaders, children of the root, then find it and log into it too.
     * Nothing to do when the root class path has no Log4j.
     */
    static void shareRootLoggerContext(ClassLoader root) throws ReflectiveOperationException {
        Class<?> logManager;
        try {
            logManager = Class.forName("org.apache.logging.log4j.LogManager", true, root);
        } catch (ClassNotFoundException e) {
            return;
        }
        logManager.getMethod("getContext", ClassLoader.class, boolean.class).invoke(null, root, false);
    }

    /** The files of a class path whose entries are files or {@code dir/*} globs, as Pulsar reads it. */
    static List<File> instanceClasspath(String classpath) {
        List<File> files = new ArrayList<>();
        for (String entry : classpath.split(File.pathSeparator)) {
            if (entry.isBlank()) {
                continue;
            }
            // URLClassLoader does not understand wildcards: a glob stands for its directory.
            File file = new File(entry.replace("*", ""));
            if (!file.exists()) {
                System.out.println("[WARN] " + file.getAbsolutePath() + " on functions instance classpath does not exist");
            } else if (file.isDirectory()) {
                File[] children = file.listFiles();
                if (children != null) {
                    Arrays.sort(children);  // a stable order, whatever the file system lists
                    files.addAll(Arrays.asList(children));
                }
            } else {
                files.add(file);
            }
        }
        return files;
    }

    /** The arguments JavaInstanceStarter accepts: all but {@code --connectors_directory DIR}. */
    static String[] starterArguments(String[] args) {
        List<String> kept = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals(CONNECTORS_DIRECTORY_OPTION)) {
                i++;
            } else if (!args[i].startsWith(CONNECTORS_DIRECTORY_OPTION + "=")) {
                kept.add(args[i]);
            }
        }
        return kept.toArray(new String[0]);
    }

    private static URL toUrl(File file) {
        try {
            return file.toURI().toURL();
        } catch (java.net.MalformedURLException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage(), e);
        }
    }
}
